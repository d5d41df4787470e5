"""Bad input gets one clear line naming the file and place, exit code 2, never a traceback.

One table per kind of input (scenario YAML here; patch files, trace files and the command line below). Each case runs
the CLI in-process through `ipvs_verify.cli.main()`, with `sys.argv` patched, and asserts the exit code,
the exact message fragment (file:line: place: what was expected) and that stderr is that one line.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipvs_verify import cli
from ipvs_verify.limits import MAX_WAIT
from ipvs_verify.scenario import load_scenario
from tests.test_trace_format import SAFETY, V1_81775, tampered  # a committed trace, edited

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").rglob("*.yaml"))


def run_cli(*args: str) -> tuple[int, str, str]:
    """`ipvs-verify ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["ipvs-verify", *args]
    code: int = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


def cli_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipvs_verify.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def assert_bad(args: tuple[str, ...], expected: str) -> str:
    code, out, err = run_cli(*args)
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err + out
    assert expected in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------- scenario YAML
def scenario(*config: str, steps: tuple[str, ...] = ("- request: client-1:port-1",), variant: str = "K46") -> str:
    """Line 1 name, 2 config:, 3 the variant, then `config` lines from line 4, `steps:`, the steps."""
    lines = ["name: x", "config:", *([f"  variant: {variant}"] if variant else []), *(f"  {c}" for c in config),
             "steps:", *(f"  {s}" for s in steps)]
    return "\n".join(lines) + "\n"


def steps(*lines: str) -> str:
    """The steps start at line 5."""
    return scenario(steps=lines)


def udp(*lines: str) -> str:
    """A UDP service; the steps start at line 6."""
    return scenario("protocol: udp", steps=lines)


REQ = "- request: client-1:port-1"
TCP_OUTCOMES = ("connected, refused, no-route, dropped, queued, lost, challenged, timed-out, broken, closed, "
                "addr-not-available, none")
UDP_OUTCOMES = "answered, lost, no-route, refused, none"
ALL_OUTCOMES = ("connected, refused, no-route, dropped, queued, challenged, timed-out, broken, closed, "
                "addr-not-available, answered, lost, none")
STEP_KINDS = ("connect, request, send, close, client-crash, datagram, wait, delete-pod, add-pod, destroy-pod, "
              "crash-pod, endpoint-gone, sync, check, set-weight, delete-dest, add-dest, conntrack-insert")

BAD_SCENARIOS: list[tuple[str, str, str]] = [
    # --- YAML syntax and the shape of the file
    ("yaml-unclosed-flow", "name: [\n", "s.yaml:1: not valid YAML: expected the node content"),
    ("yaml-unclosed-quote", "name: \"x\nconfig: {}\n", "s.yaml:1: not valid YAML: found unexpected end of stream"),
    ("yaml-bad-indent", "name: x\nconfig:\n  variant: K46\n pods: [a]\n", "s.yaml:4: not valid YAML"),
    ("yaml-tab", "name: x\nconfig:\n\tvariant: K46\n", "s.yaml:3: not valid YAML"),
    ("yaml-duplicate-key", "name: x\nname: y\n", "s.yaml:2: not valid YAML: found duplicate key \"name\""),
    ("yaml-duplicate-step-key", steps("- wait: 1", "  wait: 2"), "s.yaml:6: not valid YAML: found duplicate key"),
    ("yaml-two-documents", "name: x\n---\nname: y\n", "s.yaml:2: not valid YAML: expected a single document in the "
                                                 "stream but found another document"),
    ("yaml-undefined-alias", "name: *nope\n", "s.yaml:1: not valid YAML: found undefined alias"),
    ("yaml-mapping-in-scalar", "name: x: y\n", "s.yaml:1: not valid YAML: mapping values are not allowed"),
    ("empty-file", "", "s.yaml:1: the top level: expected a mapping with name, config and steps, got an empty"),
    ("only-comments", "# nothing here\n", "s.yaml:1: the top level: expected a mapping"),
    ("top-level-list", "- a\n- b\n", "s.yaml:1: the top level: expected a mapping with name, config and steps, "
                                     "got a list"),
    ("top-level-string", "hello\n", "s.yaml:1: the top level: expected a mapping with name, config and steps, "
                                    "got 'hello'"),
    ("top-level-number", "42\n", "s.yaml:1: the top level: expected a mapping with name, config and steps, "
                              "got the number 42"),
    ("yaml-merged-bad-value", "name: x\nconfig: {}\nsteps:\n  - &r {request: client-1:port-1, closer: bad}\n"
                              "  - <<: *r\n", "s.yaml:4: step 1, closer: expected client, server or reset"),
    ("yaml-merged-key-line", "name: x\nconfig: {}\nsteps:\n  - {wait: 1}\n  - <<: {closer: bad}\n"
                             "    request: client-1:port-1\n", "s.yaml:5: step 2, closer: expected client, "
                                                                "server or reset (who closes first), got 'bad'"),
    ("yaml-date", scenario("kernel: 2024-01-01", variant=""), "s.yaml:3: config.kernel: expected a kernel version "
                                                              "in quotes, e.g. \"5.4.163\" (the version "
                                                              "kube-proxy reads; it must map to config.variant), "
                                                              "got a date (2024-01-01)"),
    ("yaml-custom-tag", "name: !foo x\nconfig: {}\nsteps: [{wait: 1}]\n", "s.yaml:1: name: expected a non-empty "
                                                                         "string (the scenario's title), got a "
                                                                         "TaggedScalar (x)"),
    # --- top-level keys
    ("missing-name", "config: {}\nsteps: [{wait: 1}]\n", "s.yaml:1: name: missing: expected a non-empty string"),
    ("missing-config", "name: x\nsteps: [{wait: 1}]\n", "s.yaml:1: config: missing: expected a mapping of "
                                                          "settings"),
    ("missing-steps", "name: x\nconfig: {}\n", "s.yaml:1: steps: missing: expected a list of at least one step"),
    ("unknown-top-key", "name: x\nconfig: {}\nstep: [{wait: 1}]\n", "s.yaml:3: step: unknown key 'step' "
                                                                      "(expected one of: name, description"),
    ("name-empty", "name: ''\nconfig: {}\nsteps: [{wait: 1}]\n", "s.yaml:1: name: expected a non-empty string"),
    ("name-number", "name: 5\nconfig: {}\nsteps: [{wait: 1}]\n", "s.yaml:1: name: expected a non-empty string "
                                                                "(the scenario's title), got the number 5"),
    ("name-list", "name: [a]\nconfig: {}\nsteps: [{wait: 1}]\n", "s.yaml:1: name: expected a non-empty string "
                                                                "(the scenario's title), got a list"),
    ("name-null", "name:\nconfig: {}\nsteps: [{wait: 1}]\n", "s.yaml:1: name: expected a non-empty string "
                                                             "(the scenario's title), got nothing"),
    ("description-mapping", "name: x\ndescription: {a: 1}\nconfig: {}\nsteps: [{wait: 1}]\n",
     "s.yaml:2: description: expected a string, got a mapping"),
    ("steps-empty", "name: x\nconfig: {}\nsteps: []\n", "s.yaml:3: steps: expected a list of at least one step, "
                                                        "got an empty list"),
    ("steps-mapping", "name: x\nconfig: {}\nsteps: {wait: 1}\n", "s.yaml:3: steps: expected a list of at least "
                                                                 "one step, got a mapping"),
    ("steps-string", "name: x\nconfig: {}\nsteps: wait\n", "s.yaml:3: steps: expected a list of at least one "
                                                           "step, got 'wait'"),
    ("steps-null", "name: x\nconfig: {}\nsteps:\n", "s.yaml:3: steps: expected a list of at least one step, "
                                                    "got nothing"),
    ("config-string", "name: x\nconfig: K46\nsteps: [{wait: 1}]\n", "s.yaml:2: config: expected a mapping of "
                                                                    "settings (variant, kernel"),
    ("config-list", "name: x\nconfig: [K46]\nsteps: [{wait: 1}]\n", "s.yaml:2: config: expected a mapping of "
                                                                    "settings"),
    ("config-null", "name: x\nconfig:\nsteps: [{wait: 1}]\n", "s.yaml:2: config: expected a mapping of settings"),
    ("conformance-unknown-key", steps("- wait: 1") + "conformance: {fast: true}\n",
     "s.yaml:6: conformance.fast: unknown key 'fast' (expected one of: slow, known_mismatch)"),
    ("conformance-slow-yes", steps("- wait: 1") + "conformance: {slow: yes}\n",
     "s.yaml:6: conformance.slow: expected true or false, got 'yes'"),
    ("conformance-pod-network-moved", steps("- wait: 1") + "conformance: {pod_network: bridge}\n",
     "s.yaml:6: conformance.pod_network: unknown key 'pod_network' (expected one of: slow, known_mismatch)"),
    ("pod-network-flat", scenario("pod_network: flat"), "s.yaml:4: config.pod_network: expected routed or bridge, "
                                                        "got 'flat'"),
    ("pod-network-number", scenario("pod_network: 32"), "s.yaml:4: config.pod_network: expected routed or "
                                                        "bridge, got the number 32"),
    ("conformance-known-mismatch-number", steps("- wait: 1") + "conformance: {known_mismatch: 3}\n",
     "s.yaml:6: conformance.known_mismatch: expected a string: why the kernel contradicts an expectation, "
     "got the number 3"),
    ("conformance-not-mapping", steps("- wait: 1") + "conformance: slow\n",
     "s.yaml:6: conformance: expected a mapping of slow, known_mismatch, got 'slow'"),
    # --- config: variant, kernel, kube-proxy
    ("config-unknown-key", scenario("colour: red"), "s.yaml:4: config.colour: unknown key 'colour' (expected one "
                                                     "of: variant, kernel, kube_proxy, sysctls, pods"),
    ("config-underscore-typo", scenario("spare-pods: [c]"), "s.yaml:4: config.spare-pods: unknown key"),
    ("variant-unknown", scenario(variant="K99"), "s.yaml:3: config.variant: 'K99' is neither a variant (K310, "
                                                 "K41, K46NC, K46, K46U, K59, K516, K46UW, KT17) nor a kernel "
                                                 "version"),
    ("variant-number", scenario(variant="46"), "s.yaml:3: config.variant: expected a kernel variant (K310"),
    ("variant-null", scenario(variant=" "), "s.yaml:3: config.variant: expected a kernel variant"),
    ("variant-bad-version", scenario(variant="'4.x'"), "s.yaml:3: config.variant: '4.x' is not a kernel version"),
    ("variant-old-kernel", scenario(variant="'2.6.32'"), "s.yaml:3: config.variant: kernel 2.6.32 predates"),
    ("kernel-predates", scenario("kernel: 2.6.32", variant=""), "s.yaml:3: config.kernel: kernel 2.6.32 "
                                                                "predates dc7b3eb900aa"),
    ("kernel-not-version", scenario("kernel: linux", variant=""), "s.yaml:3: config.kernel: 'linux' is not a "
                                                                  "kernel version (expected e.g. 4.19.100"),
    ("kernel-unquoted-float", scenario("kernel: 5.10", variant=""), "s.yaml:3: config.kernel: expected a kernel "
                                                                    "version in quotes, e.g. \"5.4.163\" (the "
                                                                    "version kube-proxy reads; it must map to "
                                                                    "config.variant), got the number 5.1 (write "
                                                                    "it in quotes: \"5.10\")"),
    ("kernel-5.7-ambiguous", scenario("kernel: 5.7.3", variant=""), "s.yaml:3: config.kernel: kernel 5.7.3: "
                                                                    "the 5.7.y release"),
    ("kernel-disagrees-with-variant", scenario("kernel: 5.10.0"), "s.yaml:4: config.kernel: kernel 5.10.0 is "
                                                                  "variant K59, but config.variant is K46"),
    ("kernel-disagrees-version-variant", scenario("kernel: '6.1'", variant="'4.19.0'"),
     "s.yaml:4: config.kernel: kernel 6.1 is variant K516, but config.variant is K46"),
    ("kernel-disagrees-tencent", scenario("kernel: 4.14.105-tencentos"),
     "s.yaml:4: config.kernel: kernel 4.14.105-tencentos is variant KT17, but config.variant is K46"),
    ("kube-proxy-unquoted", scenario("kube_proxy: 1.30"), "s.yaml:4: config.kube_proxy: expected a kube-proxy "
                                                          "release in quotes, e.g. \"1.30\" or \"1.14.0\", got "
                                                          "the number 1.3 (write it in quotes: \"1.30\")"),
    ("kube-proxy-too-new", scenario("kube_proxy: '2.0'"), "s.yaml:4: config.kube_proxy: '2.0' is not a "
                                                          "kube-proxy version (expected e.g. 1.13.0"),
    ("kube-proxy-too-old", scenario("kube_proxy: '1.5'"), "s.yaml:4: config.kube_proxy: kube-proxy 1.5: the "
                                                          "model covers 1.11 to 1.35"),
    ("kube-proxy-not-version", scenario("kube_proxy: latest"), "s.yaml:4: config.kube_proxy: 'latest' is not a "
                                                               "kube-proxy version"),
    # --- config: sysctls
    ("sysctl-mode-7", scenario("sysctls: {conn_reuse_mode: 7}"), "s.yaml:4: config.sysctls.conn_reuse_mode: "
                                                                 "expected an integer 0..3 (a bitmap; the "
                                                                 "kernel's default is 1), got the number 7"),
    ("sysctl-mode-negative", scenario("sysctls: {conn_reuse_mode: -1}"),
     "s.yaml:4: config.sysctls.conn_reuse_mode: expected an integer 0..3 (a bitmap; the kernel's default is 1), "
     "got the number -1"),
    ("sysctl-mode-string", scenario("sysctls: {conn_reuse_mode: x}"),
     "s.yaml:4: config.sysctls.conn_reuse_mode: expected an integer 0..3 (a bitmap; the kernel's default is 1), "
     "got 'x'"),
    ("sysctl-mode-float", scenario("sysctls: {conn_reuse_mode: 1.5}"),
     "s.yaml:4: config.sysctls.conn_reuse_mode: expected an integer 0..3 (a bitmap; the kernel's default is 1), "
     "got the number 1.5"),
    ("sysctl-mode-bool", scenario("sysctls: {conn_reuse_mode: true}"),
     "s.yaml:4: config.sysctls.conn_reuse_mode: expected an integer 0..3 (a bitmap; the kernel's default is 1), "
     "got true"),
    ("sysctl-mode-null", scenario("sysctls: {conn_reuse_mode: }"),
     "s.yaml:4: config.sysctls.conn_reuse_mode: expected an integer 0..3 (a bitmap; the kernel's default is 1), "
     "got nothing"),
    ("sysctl-conntrack-5", scenario("sysctls: {conntrack: 5}"), "s.yaml:4: config.sysctls.conntrack: expected 0 "
                                                                "or 1, got the number 5"),
    ("sysctl-nodest-2", scenario("sysctls:", "  expire_nodest_conn: 2"),
     "s.yaml:5: config.sysctls.expire_nodest_conn: expected 0 or 1, got the number 2"),
    ("sysctl-quiescent-negative", scenario("sysctls: {expire_quiescent_template: -1}"),
     "s.yaml:4: config.sysctls.expire_quiescent_template: expected 0 or 1, got the number -1"),
    ("sysctl-old-conntrack-3", scenario("sysctls: {conn_reuse_old_conntrack: 3}", variant="KT17"),
     "s.yaml:4: config.sysctls.conn_reuse_old_conntrack: expected 0 or 1, got the number 3"),
    ("sysctl-old-conntrack-not-tencent", scenario("sysctls: {conn_reuse_old_conntrack: 0}"),
     "s.yaml:4: config.sysctls.conn_reuse_old_conntrack: only the TencentOS kernel (KT17) has "
     "conn_reuse_old_conntrack, not K46"),
    ("sysctl-mode-before-4.1", scenario("sysctls: {conn_reuse_mode: 0}", variant="K310"),
     "s.yaml:4: config.sysctls.conn_reuse_mode: K310 (3.10 .. 4.0) has no conn_reuse_mode"),
    ("sysctl-unknown", scenario("sysctls: {reuse: 1}"), "s.yaml:4: config.sysctls.reuse: unknown sysctl 'reuse' "
                                                        "(expected one of: conn_reuse_mode, conntrack"),
    ("sysctl-full-path", scenario("sysctls: {net.ipv4.vs.conntrack: 1}"),
     "s.yaml:4: config.sysctls.net.ipv4.vs.conntrack: unknown sysctl"),
    ("sysctls-list", scenario("sysctls: [conntrack]"), "s.yaml:4: config.sysctls: expected a mapping of sysctl "
                                                       "name to value"),
    ("sysctls-number-key", scenario("sysctls: {1: 1}"), "s.yaml:4: config.sysctls.1: unknown sysctl '1' "
                                                        "(expected one of: conn_reuse_mode"),
    # --- config: pods and scope
    ("pods-empty", scenario("pods: []"), "s.yaml:4: config.pods: expected a list of at least one pod name"),
    ("pods-string", scenario("pods: a"), "s.yaml:4: config.pods: expected a list of at least one pod name "
                                         "(lowercase letters, digits and '-'), running at the start, got 'a'"),
    ("pods-duplicate", scenario("pods: [a, b, a]"), "s.yaml:4: config.pods #3: pod 'a' is named twice (also at "
                                                    "config.pods #1); expected distinct pod names"),
    ("pods-duplicate-block", scenario("pods:", "  - a", "  - a"), "s.yaml:6: config.pods #2: pod 'a' is named "
                                                                  "twice"),
    ("spare-duplicates-pod", scenario("pods: [a, b]", "spare_pods: [b]"),
     "s.yaml:5: config.spare_pods #1: pod 'b' is named twice (also at config.pods #2)"),
    ("pod-name-uppercase", scenario("pods: [A]"), "s.yaml:4: config.pods #1: expected a pod name of lowercase "
                                                  "letters, digits and '-' (at most 63, starting and ending with "
                                                  "a letter or digit), got 'A'"),
    ("pod-name-underscore", scenario("pods: [pod_a]"), "s.yaml:4: config.pods #1: expected a pod name of "
                                                       "lowercase letters"),
    ("pod-name-dash-end", scenario("spare_pods: [c-]"), "s.yaml:4: config.spare_pods #1: expected a pod name"),
    ("pod-name-too-long", scenario(f"pods: [{'a' * 64}]"), "s.yaml:4: config.pods #1: expected a pod name"),
    ("pod-name-number", scenario("pods: [1, 2]"), "s.yaml:4: config.pods #1: expected a pod name of lowercase "
                                                  "letters, digits and '-', got the number 1 (write it in quotes: "
                                                  "\"1\")"),
    ("pod-name-null", scenario("pods: [a, ]", "spare_pods: [~]"), "s.yaml:5: config.spare_pods #1: expected a "
                                                                  "pod name of lowercase letters, digits and "
                                                                  "'-', got nothing"),
    ("pods-too-many", scenario("pods: [" + ", ".join(f"p{i}" for i in range(17)) + "]"),
     "s.yaml:4: config.pods: expected at most 16 pods in all (pods and spare_pods), got 17"),
    ("clients-zero", scenario("clients: 0"), "s.yaml:4: config.clients: expected an integer 1..8 (client "
                                             "addresses), got the number 0"),
    ("clients-nine", scenario("clients: 9"), "s.yaml:4: config.clients: expected an integer 1..8 (client "
                                             "addresses), got the number 9"),
    ("clients-word", scenario("clients: two"), "s.yaml:4: config.clients: expected an integer 1..8 (client "
                                               "addresses), got 'two'"),
    ("clients-float", scenario("clients: 1.0"), "s.yaml:4: config.clients: expected an integer 1..8 (client "
                                                "addresses), got the number 1.0"),
    ("ports-zero", scenario("ports: 0"), "s.yaml:4: config.ports: expected an integer 1..8 (ephemeral ports per "
                                         "client), got the number 0"),
    ("ports-nine", scenario("ports: 9"), "s.yaml:4: config.ports: expected an integer 1..8"),
    ("grace-negative", scenario("grace_period: -1"), "s.yaml:4: config.grace_period: expected whole seconds "
                                                     "0..2592000, got the number -1"),
    ("grace-huge", scenario("grace_period: 99999999999"), "s.yaml:4: config.grace_period: expected whole "
                                                          "seconds 0..2592000, got the number 99999999999"),
    ("nf-conntrack-yes", scenario("nf_conntrack: yes"), "s.yaml:4: config.nf_conntrack: expected true or false, "
                                                        "got 'yes'"),
    ("nf-conntrack-1", scenario("nf_conntrack: 1"), "s.yaml:4: config.nf_conntrack: expected true or false, got "
                                                    "the number 1"),
    ("protocol-sctp", scenario("protocol: sctp"), "s.yaml:4: config.protocol: expected tcp or udp, got 'sctp'"),
    ("protocol-upper", scenario("protocol: TCP"), "s.yaml:4: config.protocol: expected tcp or udp, got 'TCP'"),
    ("persistence-negative", scenario("persistence: -5"), "s.yaml:4: config.persistence: expected whole seconds "
                                                          "0..86400 (sessionAffinity ClientIP's timeout; 0: "
                                                          "none), got the number -5"),
    ("persistence-too-long", scenario("persistence: 100000"), "s.yaml:4: config.persistence: expected whole "
                                                              "seconds 0..86400"),
    ("scheduler-unknown", scenario("scheduler: fifo"), "s.yaml:4: config.scheduler: expected one of: rr, lc, "
                                                       "wlc, sh, sh-fallback, sh-port, sh-fallback-port, got 'fifo'"),
    ("ipvs-timeout-negative", scenario("ipvs_timeouts: {tcp: -1}"), "s.yaml:4: config.ipvs_timeouts.tcp: "
                                                                    "expected whole seconds 0..2147483 (0 leaves "
                                                                    "that timeout as it is), got the number -1"),
    ("ipvs-timeout-huge", scenario("ipvs_timeouts: {udp: 3000000}"), "s.yaml:4: config.ipvs_timeouts.udp: "
                                                                     "expected whole seconds 0..2147483 (0 "
                                                                     "leaves that timeout as it is), got the "
                                                                     "number 3000000"),
    ("ipvs-timeout-unknown", scenario("ipvs_timeouts: {fin: 10}"), "s.yaml:4: config.ipvs_timeouts.fin: unknown "
                                                                   "timeout 'fin' (expected one of: tcp, tcpfin, "
                                                                   "udp)"),
    ("ipvs-timeouts-list", scenario("ipvs_timeouts: [900]"), "s.yaml:4: config.ipvs_timeouts: expected a mapping "
                                                             "of tcp, tcpfin or udp"),
    # --- steps: shape and kinds
    ("step-string", steps("- wait 5"), "s.yaml:5: step 1: expected a mapping with one step kind, e.g. "
                                       "`request: client-1:port-1` or `wait: 5`, got 'wait 5'"),
    ("step-list", steps("- [wait, 5]"), "s.yaml:5: step 1: expected a mapping with one step kind"),
    ("step-null", steps(REQ, "-"), "s.yaml:6: step 2: expected a mapping with one step kind, e.g. `request: "
                                   "client-1:port-1` or `wait: 5`, got nothing"),
    ("step-empty-mapping", steps("- {}"), f"s.yaml:5: step 1: expected one step kind ({STEP_KINDS}), got none"),
    ("step-unknown-kind", steps("- jump: 3"), f"s.yaml:5: step 1, jump: unknown key 'jump' (expected one step "
                                              f"kind: {STEP_KINDS}; or closer, weight, expect, window, reply_from, "
                                              "timeout)"),
    ("step-misspelt-kind", steps(REQ, "- delete-pods: a"), "s.yaml:6: step 2, delete-pods: unknown key"),
    ("step-two-kinds", steps(REQ, "  wait: 3"), "s.yaml:6: step 1, wait: a step does one thing: expected one step "
                                                "kind, got request and wait (write one step each)"),
    ("step-only-closer", steps("- closer: server"), "s.yaml:5: step 1: expected one step kind"),
    ("step-only-expect", steps("- expect: {outcome: none}"), "s.yaml:5: step 1: expected one step kind"),
    ("step-later-is-bad", steps(REQ, "- wait: 1", "- wait: x"), "s.yaml:7: step 3, wait: expected whole seconds "
                                                                "0..2592000 (30 days), got 'x'"),
    # --- steps: wait, sync, check
    ("wait-negative", steps("- wait: -3"), "s.yaml:5: step 1, wait: expected whole seconds 0..2592000 (30 days), "
                                           "got the number -3"),
    ("wait-float", steps("- wait: 1.5"), "s.yaml:5: step 1, wait: expected whole seconds 0..2592000 (30 days), "
                                         "got the number 1.5"),
    ("wait-string-number", steps("- wait: '5'"), "s.yaml:5: step 1, wait: expected whole seconds 0..2592000 (30 "
                                                 "days), got '5'"),
    ("wait-huge", steps("- wait: 999999999999"), "s.yaml:5: step 1, wait: expected whole seconds 0..2592000 (30 "
                                                 "days), got the number 999999999999"),
    ("wait-null", steps("- wait:"), "s.yaml:5: step 1, wait: expected whole seconds 0..2592000 (30 days), got "
                                    "nothing"),
    ("wait-bool", steps("- wait: true"), "s.yaml:5: step 1, wait: expected whole seconds 0..2592000 (30 days), "
                                         "got true"),
    ("wait-total-too-long", steps(f"- wait: {MAX_WAIT}", "- wait: 1"),
     f"s.yaml:6: step 2, wait: the waits add up to {MAX_WAIT + 1} s here; expected at most {MAX_WAIT} s"),
    ("sync-false", steps("- sync: false"), "s.yaml:5: step 1, sync: expected true (run kube-proxy's pending sync "
                                           "now), got false"),
    ("sync-yes", steps("- sync: yes"), "s.yaml:5: step 1, sync: expected true (run kube-proxy's pending sync "
                                       "now), got 'yes'"),
    ("check-false", steps("- check: false"), "s.yaml:5: step 1, check: expected true (wait for the next "
                                             "graceful-deletion check), got false"),
    ("check-1", steps("- check: 1"), "s.yaml:5: step 1, check: expected true"),
    # --- steps: flows
    ("flow-unknown-client", steps("- request: client-9:port-1"),
     "s.yaml:5: step 1, request: unknown flow 'client-9:port-1' (expected client-C:port-P with C in 1..1 "
     "(config.clients) and P in 1..1 (config.ports))"),
    ("flow-unknown-port", scenario("ports: 2", steps=("- connect: client-1:port-3",)),
     "s.yaml:6: step 1, connect: unknown flow 'client-1:port-3' (expected client-C:port-P with C in 1..1 "
     "(config.clients) and P in 1..2 (config.ports))"),
    ("flow-port-zero", steps("- request: client-1:port-0"), "s.yaml:5: step 1, request: unknown flow "
                                                            "'client-1:port-0'"),
    ("flow-typo", steps("- request: client1:port1"), "s.yaml:5: step 1, request: unknown flow 'client1:port1'"),
    ("flow-spaces", steps("- send: 'client-1: port-1'"), "s.yaml:5: step 1, send: unknown flow"),
    ("flow-number", steps("- close: 1"), "s.yaml:5: step 1, close: expected a flow 'client-C:port-P' (C counts "
                                         "config.clients, P config.ports), got the number 1"),
    ("flow-mapping", steps("- request: {client: 1, port: 1}"), "s.yaml:5: step 1, request: expected a flow "
                                                               "'client-C:port-P'"),
    ("flow-null", steps("- connect:"), "s.yaml:5: step 1, connect: expected a flow 'client-C:port-P' (C counts "
                                       "config.clients, P config.ports), got nothing"),
    ("tcp-request-in-udp", udp("- request: client-1:port-1"), "s.yaml:6: step 1, request: a TCP step in a UDP "
                                                              "service (config.protocol: udp); expected "
                                                              "datagram"),
    ("tcp-connect-in-udp", udp("- connect: client-1:port-1"), "s.yaml:6: step 1, connect: a TCP step in a UDP "
                                                              "service"),
    ("tcp-close-in-udp", udp("- datagram: client-1:port-1", "- close: client-1:port-1"),
     "s.yaml:7: step 2, close: a TCP step in a UDP service"),
    ("udp-datagram-in-tcp", steps("- datagram: client-1:port-1"), "s.yaml:5: step 1, datagram: a UDP step in a "
                                                                  "TCP service; expected connect, request, send "
                                                                  "or close (or config.protocol: udp)"),
    ("closer-unknown", steps(REQ, "  closer: both"), "s.yaml:6: step 1, closer: expected client, server or "
                                                     "reset (who closes first), got 'both'"),
    ("closer-on-wait", steps("- wait: 1", "  closer: server"), "s.yaml:6: step 1, closer: only a request or a "
                                                               "close step has a closer, not a wait step"),
    ("closer-on-connect", steps("- connect: client-1:port-1", "  closer: client"),
     "s.yaml:6: step 1, closer: only a request or a close step has a closer, not a connect step"),
    ("closer-null", steps(REQ, "  closer:"), "s.yaml:6: step 1, closer: expected client, server or reset (who "
                                             "closes first), got nothing"),
    # --- steps: pods and dests
    ("delete-pod-unknown", steps("- delete-pod: z"), "s.yaml:5: step 1, delete-pod: unknown pod 'z' (expected "
                                                     "one of: a, b)"),
    ("add-pod-unknown", scenario("spare_pods: [c]", steps=("- add-pod: d",)),
     "s.yaml:6: step 1, add-pod: unknown pod 'd' (expected one of: a, b, c)"),
    ("destroy-pod-unknown", steps("- destroy-pod: pod-a"), "s.yaml:5: step 1, destroy-pod: unknown pod 'pod-a' "
                                                           "(expected one of: a, b)"),
    ("crash-pod-unknown", steps("- crash-pod: c"), "s.yaml:5: step 1, crash-pod: unknown pod 'c' (expected one "
                                                   "of: a, b)"),
    ("endpoint-gone-unknown", steps("- endpoint-gone: B"), "s.yaml:5: step 1, endpoint-gone: unknown pod 'B'"),
    ("set-weight-unknown", steps("- set-weight: z", "  weight: 0"), "s.yaml:5: step 1, set-weight: unknown pod "
                                                                    "'z' (expected one of: a, b)"),
    ("delete-dest-unknown", steps("- delete-dest: z"), "s.yaml:5: step 1, delete-dest: unknown pod 'z'"),
    ("add-dest-unknown", steps("- add-dest: z"), "s.yaml:5: step 1, add-dest: unknown pod 'z'"),
    ("delete-pod-number", scenario("pods: ['1', '2']", steps=("- delete-pod: 1",)),
     "s.yaml:6: step 1, delete-pod: expected a pod name from config.pods or config.spare_pods, got the number 1 "
     "(write it in quotes: \"1\")"),
    ("delete-pod-list", steps("- delete-pod: [a, b]"), "s.yaml:5: step 1, delete-pod: expected a pod name from "
                                                       "config.pods or config.spare_pods, got a list"),
    ("weight-too-big", steps("- set-weight: a", "  weight: 70000"), "s.yaml:6: step 1, weight: expected an "
                                                                    "integer 0..65535, got the number 70000"),
    ("weight-negative", steps("- add-dest: a", "  weight: -1"), "s.yaml:6: step 1, weight: expected an integer "
                                                                "0..65535, got the number -1"),
    ("weight-string", steps("- set-weight: a", "  weight: zero"), "s.yaml:6: step 1, weight: expected an integer "
                                                                  "0..65535, got 'zero'"),
    ("weight-on-request", steps(REQ, "  weight: 1"), "s.yaml:6: step 1, weight: only a set-weight or an add-dest "
                                                     "step has a weight, not a request step"),
    ("weight-on-delete-pod", steps("- delete-pod: a", "  weight: 0"), "s.yaml:6: step 1, weight: only a "
                                                                      "set-weight or an add-dest step has a "
                                                                      "weight, not a delete-pod step"),
    # --- expectations
    ("outcome-unknown", steps(REQ, "  expect: {outcome: connectd}"),
     f"s.yaml:6: step 1, expect.outcome: expected one of: {ALL_OUTCOMES}, got 'connectd'"),
    ("outcome-number", steps(REQ, "  expect: {outcome: 1}"), "s.yaml:6: step 1, expect.outcome: expected one of: "
                                                             "connected, refused"),
    ("outcome-udp-in-tcp", steps(REQ, "  expect: {outcome: answered}"),
     f"s.yaml:6: step 1, expect.outcome: 'answered' is not an outcome of a TCP service (expected one of: "
     f"{TCP_OUTCOMES})"),
    ("outcome-tcp-in-udp", udp("- datagram: client-1:port-1", "  expect: {outcome: connected}"),
     f"s.yaml:7: step 1, expect.outcome: 'connected' is not an outcome of a UDP service (expected one of: "
     f"{UDP_OUTCOMES})"),
    ("outcome-null", steps(REQ, "  expect: {outcome: }"), "s.yaml:6: step 1, expect.outcome: expected one of: "
                                                          f"{ALL_OUTCOMES}, got nothing"),
    ("expect-pod-unknown", steps(REQ, "  expect: {outcome: connected, pod: c}"),
     "s.yaml:6: step 1, expect.pod: unknown pod 'c' (expected one of: a, b)"),
    ("expect-pod-number", steps(REQ, "  expect: {pod: 1}"), "s.yaml:6: step 1, expect.pod: expected a pod name "
                                                            "from config.pods or config.spare_pods (the pod "
                                                            "reached), got the number 1"),
    ("entry-state-unknown", steps(REQ, "  expect: {entry_state: ESTAB}"),
     "s.yaml:6: step 1, expect.entry_state: unknown entry state 'ESTAB' for a TCP service (expected one of: "
     "NONE, ESTABLISHED, SYN_SENT"),
    ("entry-state-lowercase", steps(REQ, "  expect: {entry_state: time_wait}"),
     "s.yaml:6: step 1, expect.entry_state: unknown entry state 'time_wait'"),
    ("entry-state-udp-in-tcp", steps(REQ, "  expect: {entry_state: NORMAL}"),
     "s.yaml:6: step 1, expect.entry_state: unknown entry state 'NORMAL' for a TCP service"),
    ("entry-state-tcp-in-udp", udp("- datagram: client-1:port-1", "  expect: {entry_state: ESTABLISHED}"),
     "s.yaml:7: step 1, expect.entry_state: unknown entry state 'ESTABLISHED' for a UDP service (expected one "
     "of: NORMAL)"),
    ("entry-state-on-wait", steps(REQ, "- wait: 1", "  expect: {entry_state: TIME_WAIT}"),
     "s.yaml:7: step 2, expect.entry_state: only a step of a flow (connect, request, send, close, datagram, "
     "client-crash) has "
     "an entry to check, not a wait step"),
    ("entry-dest-unknown", steps(REQ, "  expect: {entry_dest: c}"), "s.yaml:6: step 1, expect.entry_dest: "
                                                                    "unknown pod 'c' (expected one of: a, b)"),
    ("entry-dest-on-delete", steps(REQ, "- delete-pod: a", "  expect: {entry_dest: b}"),
     "s.yaml:7: step 2, expect.entry_dest: only a step of a flow"),
    ("expect-weight-unknown-pod", steps("- wait: 1", "  expect: {weight: {c: 1}}"),
     "s.yaml:6: step 1, expect.weight.c: unknown pod 'c' (expected one of: a, b)"),
    ("expect-weight-too-big", steps("- wait: 1", "  expect: {weight: {a: 70000}}"),
     "s.yaml:6: step 1, expect.weight.a: expected a weight 0..65535, got the number 70000"),
    ("expect-weight-list", steps("- wait: 1", "  expect: {weight: [a]}"),
     "s.yaml:6: step 1, expect.weight: expected a mapping of pod name to weight 0..65535, got a list"),
    ("expect-active-negative", steps("- wait: 1", "  expect: {active: {a: -1}}"),
     "s.yaml:6: step 1, expect.active.a: expected a count (ActiveConn), 0 or more, got the number -1"),
    ("expect-inactive-unknown-pod", steps("- wait: 1", "  expect:", "    inactive: {a: 0, z: 1}"),
     "s.yaml:7: step 1, expect.inactive.z: unknown pod 'z'"),
    ("expect-inactive-string", steps("- wait: 1", "  expect: {inactive: {a: one}}"),
     "s.yaml:6: step 1, expect.inactive.a: expected a count (InActConn), 0 or more, got 'one'"),
    ("expect-dest-deleted-unknown", steps("- delete-dest: a", "  expect: {dest_deleted: [a, z]}"),
     "s.yaml:6: step 1, expect.dest_deleted #2: unknown pod 'z' (expected one of: a, b)"),
    ("expect-dest-deleted-string", steps("- delete-dest: a", "  expect: {dest_deleted: a}"),
     "s.yaml:6: step 1, expect.dest_deleted: expected a list of pod names whose real server is deleted, got "
     "'a'"),
    ("expect-empty", steps(REQ, "  expect: {}"), "s.yaml:6: step 1, expect: expected at least one of: outcome, "
                                                 "pod, entry_state, entry_dest, weight, active, inactive, "
                                                 "dest_deleted"),
    ("expect-null", steps(REQ, "  expect:"), "s.yaml:6: step 1, expect: expected a mapping of expectations "
                                             "(outcome, pod"),
    ("expect-string", steps(REQ, "  expect: connected"), "s.yaml:6: step 1, expect: expected a mapping of "
                                                         "expectations (outcome, pod, entry_state"),
    ("expect-list", steps(REQ, "  expect: [connected]"), "s.yaml:6: step 1, expect: expected a mapping of "
                                                         "expectations"),
    ("expect-key-typo", steps(REQ, "  expect: {outcom: connected}"),
     "s.yaml:6: step 1, expect.outcom: 'outcom' is neither an expectation key (outcome, pod, entry_state, "
     "entry_dest, weight, active, inactive, dest_deleted, neighbour) nor a variant name (K310, K41, K46NC, K46, K46U, "
     "K59, K516, K46UW, KT17, default)"),
    ("expect-key-typo-beside-good", steps(REQ, "  expect: {outcome: connected, podd: a}"),
     "s.yaml:6: step 1, expect.podd: unknown key 'podd' (expected one of the expectation keys: outcome, pod"),
    ("expect-misspelt-variant", steps(REQ, "  expect:", "    K64: {outcome: connected}"),
     "s.yaml:7: step 1, expect.K64: 'K64' is neither an expectation key"),
    ("expect-misspelt-variant-beside-good", steps(REQ, "  expect:", "    default: {outcome: connected}",
                                                  "    K4G: {outcome: dropped}"),
     "s.yaml:8: step 1, expect.K4G: 'K4G' is neither an expectation key"),
    ("expect-lowercase-variant", steps(REQ, "  expect:", "    k46: {outcome: dropped}"),
     "s.yaml:7: step 1, expect.k46: 'k46' is neither an expectation key"),
    ("expect-kernel-version-key", steps(REQ, "  expect:", "    '4.19.0': {outcome: dropped}"),
     "s.yaml:7: step 1, expect.4.19.0: '4.19.0' is neither an expectation key"),
    ("expect-variant-beside-keys", steps(REQ, "  expect: {outcome: connected, K46: {outcome: dropped}}"),
     "s.yaml:6: step 1, expect.K46: unknown key 'K46' (expected one of the expectation keys: outcome, pod, "
     "entry_state, entry_dest, weight, active, inactive, dest_deleted, neighbour; per-variant expectations are a "
     "mapping of variant names and default only)"),
    ("expect-per-variant-bad-outcome", steps(REQ, "  expect:", "    default: {outcome: connected}",
                                             "    K46: {outcome: drop}"),
     f"s.yaml:8: step 1, expect.K46.outcome: expected one of: {ALL_OUTCOMES}, got 'drop'"),
    ("expect-per-variant-unknown-pod", steps(REQ, "  expect:", "    K46: {outcome: connected}",
                                             "    default: {pod: z}"),
     "s.yaml:8: step 1, expect.default.pod: unknown pod 'z' (expected one of: a, b)"),
    ("expect-per-variant-unknown-state", steps(REQ, "  expect:", "    K516: {entry_state: TIMEWAIT}"),
     "s.yaml:7: step 1, expect.K516.entry_state: unknown entry state 'TIMEWAIT'"),
    ("expect-per-variant-empty", steps(REQ, "  expect:", "    K46: {}"),
     "s.yaml:7: step 1, expect.K46: expected at least one of: outcome, pod"),
    ("expect-per-variant-null", steps(REQ, "  expect:", "    K46:"),
     "s.yaml:7: step 1, expect.K46: expected a mapping of expectations"),
    ("expect-per-variant-string", steps(REQ, "  expect:", "    K46: connected"),
     "s.yaml:7: step 1, expect.K46: expected a mapping of expectations (outcome, pod"),
    ("expect-per-variant-extra-key", steps(REQ, "  expect:", "    K46: {outcome: connected, state: X}"),
     "s.yaml:7: step 1, expect.K46.state: unknown key 'state' (expected one of the expectation keys"),
    # --- what only the replay can tell (the state at the step), still with the step's place
    ("destroy-running-pod", steps("- destroy-pod: a"), "s.yaml:5: step 1, destroy-pod: the pod is not "
                                                       "terminating (expected delete-pod first, or crash-pod)"),
    ("delete-pod-twice", steps("- delete-pod: a", "- delete-pod: a"), "s.yaml:6: step 2, delete-pod: not possible "
                                                                      "for a pod that is TERMINATING"),
    ("add-running-pod", steps("- add-pod: a"), "s.yaml:5: step 1, add-pod: not possible for a pod that is "
                                               "RUNNING"),
    ("sync-nothing-pending", steps("- sync: true"), "s.yaml:5: step 1, sync: kube-proxy has no pending sync "
                                                    "(nothing changed); expected a change first"),
    ("send-not-connected", steps("- send: client-1:port-1"), "s.yaml:5: step 1, send: not possible now"),
    ("close-not-connected", steps("- close: client-1:port-1"), "s.yaml:5: step 1, close: not possible now"),
    ("add-dest-existing", steps("- add-dest: a"), "s.yaml:5: step 1, add-dest: the real server is not in a state "
                                                  "that allows it"),
    # --- a sync's read/delete window
    ("window-on-request", steps(REQ, "  window: client-1:port-1"), "s.yaml:6: step 1, window: only a sync step has "
                                                                   "a window"),
    ("window-unknown-flow", steps("- delete-pod: b", "- sync: true", "  window: client-9:port-1"),
     "s.yaml:7: step 2, window: unknown flow 'client-9:port-1' (expected client-C:port-P with C in 1..1"),
    ("window-in-udp", udp("- delete-pod: b", "- sync: true", "  window: client-1:port-1"),
     "s.yaml:8: step 2, window: a window connects over TCP; expected config.protocol: tcp"),
    ("window-nothing-deleted", steps(REQ, "  closer: server", "- delete-pod: b", "- sync: true",
                                     "  window: client-1:port-1"),
     "s.yaml:8: step 3, sync: window: this sync reads and then deletes 0 real servers a connect could reach"),
    ("window-port-busy", steps("- connect: client-1:port-1", "- delete-pod: a", "- sync: true",
                               "  window: client-1:port-1"),
     "s.yaml:7: step 3, sync: window: client-1:port-1 cannot connect now"),
    # --- a conntrack-insert step and the node's INVALID rule
    ("ct-insert-no-reply-from", steps("- conntrack-insert: client-1:port-1", "  timeout: 5"),
     "s.yaml:5: step 1: a conntrack-insert step expects both reply_from (a pod) and timeout (s)"),
    ("ct-insert-bare", steps("- conntrack-insert: client-1:port-1"),
     "s.yaml:5: step 1: a conntrack-insert step names its entry: expected reply_from (a pod) and timeout (s)"),
    ("ct-insert-unknown-pod", steps("- conntrack-insert: client-1:port-1", "  reply_from: z", "  timeout: 5"),
     "s.yaml:6: step 1, reply_from: unknown pod 'z' (expected one of: a, b)"),
    ("ct-insert-timeout-long", steps("- conntrack-insert: client-1:port-1", "  reply_from: a", "  timeout: 121"),
     "s.yaml:7: step 1, timeout: expected whole seconds 1..120"),
    ("ct-insert-unknown-flow", steps("- conntrack-insert: client-2:port-1", "  reply_from: a", "  timeout: 5"),
     "s.yaml:5: step 1, conntrack-insert: unknown flow 'client-2:port-1'"),
    ("reply-from-on-request", steps(REQ, "  reply_from: a"), "s.yaml:6: step 1, reply_from: only a "
                                                              "conntrack-insert step has reply_from and timeout"),
    ("ct-insert-in-udp", udp("- conntrack-insert: client-1:port-1", "  reply_from: a", "  timeout: 5"),
     "s.yaml:6: step 1, conntrack-insert: a conntrack-insert step makes a TCP entry"),
    ("ct-insert-used-flow", steps(REQ, "- conntrack-insert: client-1:port-1", "  reply_from: a", "  timeout: 5"),
     "s.yaml:6: step 2, conntrack-insert: client-1:port-1 already has entries or a socket"),
    ("invalid-drop-no-conntrack", scenario("nf_conntrack: false", "invalid_drop: true"),
     "s.yaml:5: config.invalid_drop: a rule matching --ctstate INVALID is a conntrack user"),
    ("invalid-drop-string", scenario("invalid_drop: yes"), "s.yaml:4: config.invalid_drop: expected true or false"),
]


def test_enough_scenario_cases() -> None:
    assert len(BAD_SCENARIOS) >= 120
    ids = [c[0] for c in BAD_SCENARIOS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("text, expected", [c[1:] for c in BAD_SCENARIOS], ids=[c[0] for c in BAD_SCENARIOS])
def test_bad_scenario(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    line = assert_bad(("replay", str(p)), f"error: {tmp_path}/{expected}")
    assert line.startswith(f"error: {p}")


BAD_FILES: list[tuple[str, bytes | None, str]] = [
    # (id, the file's bytes; None: no file at all, b"<dir>": a directory, what stderr must hold)
    ("missing-file", None, "s.yaml: no such file (expected a scenario YAML file)"),
    ("directory", b"<dir>", "s.yaml: is a directory (expected a scenario YAML file)"),
    ("not-utf8", b"name: x\nconfig: {}\nsteps: [{wait: 1}]\ndescription: caf\xe9\n",
     "s.yaml:4: column 17: expected UTF-8 text, got the byte 0xe9"),
    ("utf16", "name: x\n".encode("utf-16"), "s.yaml:1: column 1: expected UTF-8 text, got the byte 0xff"),
    ("nul-byte", b"name: x\x00\n", "s.yaml:1: not valid YAML"),
]


@pytest.mark.parametrize("content, expected", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_scenario_file(tmp_path: Path, content: bytes | None, expected: str) -> None:
    p = tmp_path / "s.yaml"
    if content == b"<dir>":
        p.mkdir()
    elif content is not None:
        p.write_bytes(content)
    assert_bad(("replay", str(p)), f"error: {tmp_path}/{expected}")


def test_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + steps("- wait: 1").replace("\n", "\r\n").encode())
    code, _out, err = run_cli("replay", str(p))
    assert code == 0, err


# ---------------------------------------------------------------------- replay's command line
@pytest.mark.parametrize("option, expected", [
    ("K99", "error: --variant: 'K99' is neither a variant (K310, K41"),
    ("2.6.32", "error: --variant: kernel 2.6.32 predates"),
    ("5.7.1", "error: --variant: kernel 5.7.1: the 5.7.y release"),
    ("4.x", "error: --variant: '4.x' is not a kernel version"),
])
def test_bad_variant_option(tmp_path: Path, option: str, expected: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(steps(REQ))
    line = assert_bad(("replay", str(p), "--variant", option), expected)
    assert "s.yaml" not in line  # the option is to blame, not the file


def test_variant_option_by_version_uses_that_variants_expectations() -> None:
    """`--variant 4.19.0` (or k46) meets the expectations written for K46, not the default ones."""
    path = ROOT / "scenarios" / "T05-weight0-mode1.yaml"
    for option in ("K46", "k46", "4.19.0"):
        code, out, err = run_cli("replay", str(path), "--variant", option)
        assert code == 0 and "all expectations met" in out and "dropped" in out, out + err


def test_real_entry_point(tmp_path: Path) -> None:
    """The same line and exit code from the installed-style entry point, in a fresh interpreter."""
    p = tmp_path / "s.yaml"
    p.write_text(scenario("sysctls: {conn_reuse_mode: 7}"))
    r = cli_subprocess("replay", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == (f"error: {p}:4: config.sysctls.conn_reuse_mode: expected an integer 0..3 (a "
                                "bitmap; the kernel's default is 1), got the number 7")
    r = cli_subprocess("replay", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml: no such file" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------- every committed scenario still loads
def test_committed_scenarios_exist() -> None:
    assert len(SCENARIOS) >= 50


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT / "scenarios")))
def test_committed_scenario_replays(path: Path) -> None:
    load_scenario(path)
    code, out, err = run_cli("replay", str(path))
    assert code == 0, out + err
    assert "all expectations met" in out


# ---------------------------------------------------------------------- trace files and other commands
# ---------------------------------------------------------------------- patch files (`check PATCH`, issue 16)
BAD_YAML = {
    "not-yaml.yaml": ("id: [x\n", ":1: not valid YAML"),
    "top-list.yaml": ("- a\n", ":1: the top level: expected a mapping"),
    "missing-base.yaml": ("id: x\ntitle: t\nbased_on: b\n", ": base: missing"),
    "unknown-key.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nkernal: {}\n",
                         ":5: kernal: unknown key 'kernal' (expected one of: id, title"),
    "unknown-feature.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nkernel:\n  add: [UNCONFIRMED]\n",
                             ":6: kernel.add #1: unknown kernel feature 'UNCONFIRMED' (expected one of: W0_SYN"),
    "already-has.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K516]}\nkernel:\n  add: [UNCONF]\n",
                         "K516 already has UNCONF (it contradicts its base)"),
    "remove-absent.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nkernel:\n  remove: [UNCONF]\n",
                           "K46 has no UNCONF (it contradicts its base)"),
    "no-kernel.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K41]}\nkernel:\n  add: [UNCONF]\n",
                       "this is no kernel: UNCONF needs DROP1"),
    # 35dfb013149f without f0a5e4d7a594: its server-status block calls a predicate that kernel lacks
    "nodest-without-unconf.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nkernel:\n"
                                   "  add: [NODEST_WORK]\n", "this is no kernel: NODEST_WORK needs UNCONF"),
    "tencent-sysctl.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nsysctls:\n"
                            "  conn_reuse_old_conntrack: 0\n", ":6: sysctls.conn_reuse_old_conntrack: only the "
                            "TencentOS kernel"),
    "bad-sysctl.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nsysctls:\n  conn_reuse_mode: 7\n",
                        ":6: sysctls.conn_reuse_mode: expected 0..3, got the number 7"),
    "unknown-sysctl.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nsysctls:\n  conntrak: 1\n",
                            ":6: sysctls.conntrak: unknown key 'conntrak' (expected one of: conn_reuse_mode"),
    "bad-policy.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nkube_proxy:\n"
                        "  conn_reuse_mode: zero\n", ":6: kube_proxy.conn_reuse_mode: expected leave, force-zero"),
    "time-wait.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nkube_proxy:\n"
                       "  ipvs_timeouts: {time_wait: 60}\n", "unknown key 'time_wait' (expected one of: tcp, tcpfin, "
                       "udp)"),
    "bad-variant.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K99]}\n",
                         ":4: base.variants #1: 'K99' is neither a variant"),
    "bad-kp.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46], kube_proxy: \"2.0\"}\n",
                    ":4: base.kube_proxy: '2.0' is not a kube-proxy version"),
    "kp-number.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46], kube_proxy: 1.30}\n",
                       "write it in quotes"),
    "bad-id.yaml": ("id: 'a b'\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\n", ":1: id: expected a short name"),
    "empty-value.yaml": ("id: x\ntitle:\nbased_on: b\nbase: {variants: [K46]}\n", ":2: title: expected a value"),
    "clients.yaml": ("id: x\ntitle: t\nbased_on: b\nbase: {variants: [K46]}\nenvironment: {clients: 9}\n",
                     ":5: environment.clients: expected an integer 1..8"),
    "notes.txt": ("id: x\n", "expected a patch file: .yaml (declarative) or .py"),
}

BAD_PY = {
    "no-decisions.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": ["K46"]}\n',
                        ":1: DECISIONS: missing"),
    "unknown-point.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": ["K46"]}\n'
                         'def f(v, s):\n    return True\nDECISIONS = {"reuse": f}\n',
                         ":7: DECISIONS: unknown decision point 'reuse' (expected one of:"),
    "signature.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": ["K46"]}\n'
                     'def f(v, s):\n    return True\nDECISIONS = {"port-reuse": f}\n',
                     ":5: DECISIONS.port-reuse: f must take (v, s, state, controlled"),
    "lambda.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": ["K46"]}\n'
                  'DECISIONS = {"drop-predicate": lambda v, nfct, ct: False}\n',
                  "expected a function defined at the module's top level"),
    "import-error.py": ('import os\nraise RuntimeError("boom")\n', ":2: importing it raised RuntimeError: boom"),
    "bad-base.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": "K46"}\n'
                    'def f(v, nfct, ct):\n    return False\nDECISIONS = {"drop-predicate": f}\n',
                    ":4: BASE.variants: expected a list of kernel variants"),
    "raises.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": ["K46"]}\n'
                  'def f(v, nfct, skb_ct):\n    if skb_ct.name == "CONFIRMED":\n        raise KeyError(skb_ct)\n'
                  '    return False\nDECISIONS = {"drop-predicate": f}\n',
                  "decision point drop-predicate raised KeyError"),
    "domain.py": ('ID = "x"\nTITLE = "t"\nBASED_ON = "b"\nBASE = {"variants": ["K46"]}\n'
                  'def f(self, is_udp, active, inactive):\n    return active\nDECISIONS = {"deletion-criterion": f}\n',
                  "decision point deletion-criterion returned 0, outside its domain: expected True or False "
                  "(input: kube-proxy 1.30, False, 0, 0)"),
}


@pytest.mark.parametrize("name", sorted(BAD_YAML) + sorted(BAD_PY))
def test_bad_patch_file(name: str, tmp_path: Path) -> None:
    text, expected = BAD_YAML.get(name) or BAD_PY[name]
    path = tmp_path / name
    path.write_text(text)
    code, _, err = run_cli("check", str(path), "-q")
    assert code == 2, err
    assert err.startswith(f"error: {path}"), err
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- trace files: one line, exit 2
def _v1(edit: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], object]:
    """An edit of the version 1 fixture (marked by returning it)."""
    edit.v1 = True  # type: ignore[attr-defined]
    return edit


def _step(n: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["steps"][n].update(changes)


def _event(n: int, e: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["steps"][n]["events"][e] = value
    return edit


def _pop(*keys: str | int) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        for k in keys[:-1]:
            d = d[k]  # type: ignore[index]
        del d[keys[-1]]  # type: ignore[arg-type]
    return edit


def _put(value: Any, *keys: str | int) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        for k in keys[:-1]:
            d = d[k]  # type: ignore[index]
        d[keys[-1]] = value  # type: ignore[index]
    return edit


SYN = {"event": "SYN_FORWARDED", "flow": "client-1:port-1", "pod": "pod-b", "flags": []}

MALFORMED: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("format", _put("something-else", "format"), 'format: not an ipvs-verify-trace file (expected "format": '),
    ("version-3", _put(3, "version"), "version: expected 2 (or 1, migrated on load), got 3"),
    ("version-string", _put("2", "version"), "version: expected 2 (or 1, migrated on load), got '2'"),
    ("version-missing", _pop("version"), "version: expected 2 (or 1, migrated on load), got None"),
    ("steps-missing", _pop("steps"), "the file: missing key 'steps'"),
    ("config-missing", _pop("config"), "the file: missing key 'config'"),
    ("steps-not-a-list", _put({}, "steps"), "steps: expected a list, got {}"),
    ("step-not-an-object", _put(3, "steps", 0), "steps.0: expected an object, got 3"),
    ("action-missing", _pop("steps", 0, "action"), "steps.0: missing key 'action'"),
    ("action-unknown", _step(0, action="jump"), "steps.0.action: expected 'request', 'connect', "),
    ("time-string", _step(1, time="0"), 'steps.1.time: expected a valid integer, got "0"'),
    ("time-bool", _step(1, time=True), "steps.1.time: expected a valid integer, got true"),
    ("params-extra", _put("red", "steps", 0, "params", "colour"),
     "steps.0.params: unknown key 'colour' (expected only: flow, closer, client, entry, seconds, pod, weight, "
     "neighbour, freed, packet)"),
    ("params-missing", _put({}, "steps", 2, "params"), "steps.2: params: 'endpoint-gone' takes pod, got none"),
    ("closer-unknown", _put("nobody", "steps", 0, "params", "closer"),
     "steps.0.params.closer: expected 'none', 'client', 'server' or 'reset', got \"nobody\""),
    ("event-unknown", _event(0, 0, {**SYN, "event": "SYN_EXPLODED"}),
     "steps.0.events.0.event: unknown event 'SYN_EXPLODED' (expected one of: SYN_FORWARDED, SYN_DROPPED, "),
    ("event-nameless", _event(0, 0, {"flow": "client-1:port-1"}),
     "steps.0.events.0: missing key 'event' (the name of an event, one of: SYN_FORWARDED, "),
    ("event-number", _event(0, 0, [0, 0, 1, 0]), "steps.0.events.0: expected an object, got [0, 0, 1, 0]"),
    ("event-field-type", _event(0, 0, {**SYN, "pod": 1}), "steps.0.events.0.pod: expected a valid string, got 1"),
    ("event-field-missing", _event(0, 0, {k: v for k, v in SYN.items() if k != "flow"}),
     "steps.0.events.0: missing key 'flow'"),
    ("event-field-extra", _event(0, 0, {**SYN, "why": "REUSE"}),
     "steps.0.events.0: unknown key 'why' (expected only: event, flow, pod, flags)"),
    ("event-flag-unknown", _event(0, 0, {**SYN, "flags": ["FAST"]}),
     "steps.0.events.0.flags.0: expected 'REUSED', 'POD_DEAD', 'DEST_W0', 'DEST_DELETED' or 'RETRANSMIT', "
     'got "FAST"'),
    ("event-drop-reason", _event(0, 0, {"event": "SYN_DROPPED", "flow": "client-1:port-1", "why": "LOST"}),
     "steps.0.events.0.why: expected 'REUSE' or 'NODEST', got \"LOST\""),
    ("state-missing", _pop("steps", 0, "state"), "steps.0: missing key 'state'"),
    ("state-conntrack", _put("maybe", "steps", 0, "state", "conntrack", "client-1:port-1"),
     "steps.0.state.conntrack.client-1:port-1: expected 'live', 'none' or 'SYN_SENT, expires at T', got \"maybe\""),
    ("state-expires-at", _put("soon", "steps", 0, "state", "ipvs", "entries", 0, "expires_at"),
     "steps.0.state.ipvs.entries.0.expires_at: expected a time in seconds (an integer) or \"now\", got 'soon'"),
    ("state-entry-state", _put("HALF_OPEN", "steps", 0, "state", "ipvs", "entries", 0, "state"),
     "steps.0.state.ipvs.entries.0.state: expected 'NONE', 'ESTABLISHED', "),
    ("initial-state-missing", _pop("initial_state"), "the file: missing key 'initial_state'"),
    ("protocol", _put("sctp", "config", "scope", "protocol"), "config.scope.protocol: expected 'tcp' or 'udp'"),
    ("clients-bool", _put(True, "config", "scope", "clients"),
     "config.scope.clients: expected a valid integer, got true"),
    ("timeouts-missing-state", _pop("config", "timing", "ipvs_timeouts", "NONE"),
     "config.timing.ipvs_timeouts: missing key 'NONE'"),
    ("variant-unknown", _put("K99", "config", "variant"), "config: 'K99' is neither a variant"),
    ("kube-proxy-unknown", _put("0.1", "config", "kube_proxy"), "config: '0.1' is not a kube-proxy version"),
    ("scheduler-unknown", _put("fastest", "config", "scheduler"), "config: unknown scheduler 'fastest'"),
    ("sysctl-unknown", _put(1, "config", "sysctl_overrides", "colour"),
     "config.sysctl_overrides.colour: unknown sysctl (expected one of: conn_reuse_mode, "),
    ("sysctl-range", _put(7, "config", "sysctl_overrides", "conn_reuse_mode"),
     "config.sysctl_overrides.conn_reuse_mode: expected 0..3, got 7"),
    ("property-unknown", _put("no-bugs", "property"), "property: unknown property 'no-bugs' (expected one of: "),
    ("kind", _put("both", "kind"), "kind: expected 'safety' or 'liveness', got \"both\""),
    ("status", _put("maybe", "status"), "status: expected 'violated' or 'undecided', got \"maybe\""),
    ("seed", _put("x", "seed"), 'seed: expected a valid integer, got "x"'),
    ("loop-start", _put("1", "loop_start"), 'loop_start: expected a valid integer, got "1"'),
    ("top-level-extra", _put(1, "colour"), "the file: unknown key 'colour' (expected only: format, version, "),
    ("hypothesis", _put([], "hypothesis"), "hypothesis: expected an object, got []"),
    ("v1-event-short", _v1(_event(0, 0, [0, 0])),
     "steps.0.events.0: expected [kind, subject, a, b], four integers (format version 1), got [0, 0]"),
    ("v1-event-number", _v1(_event(0, 0, [99, 0, 0, 0])),
     "steps.0.events.0: unknown version 1 event number 99 (expected 0..32)"),
    ("v1-event-value", _v1(_event(0, 0, [1, 0, 5, 0])),
     "steps.0.events.0: SYN_DROPPED.why: expected 0..1 (REUSE, NODEST), got 5"),
    ("v1-event-flags", _v1(_event(0, 0, [0, 0, 1, 64])),
     "steps.0.events.0: SYN_FORWARDED.flags: expected a sum of 1 (REUSED), 2 (POD_DEAD), "),
    ("v1-event-unused", _v1(_event(0, 0, [2, 0, 0, 3])), "steps.0.events.0: REFUSED has no field for the value 3"),
    ("v1-config", _v1(_pop("config", "scope")), "config: missing key 'scope'"),
]


@pytest.mark.parametrize("edit, expected", [(e, x) for _, e, x in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_a_malformed_trace_is_one_line_with_exit_2(tmp_path: Path, edit: Callable[[dict[str, Any]], object],
                                                   expected: str) -> None:
    path = tampered(tmp_path, edit, V1_81775 if getattr(edit, "v1", False) else SAFETY)
    code, out, err = run_cli("show", str(path))
    assert code == 2, out + err
    assert err.startswith(f"error: {path}: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


@pytest.mark.parametrize("text, expected", [
    ("", "edited.json:1:1: not JSON (Expecting value)"),
    ("{not json", "edited.json:1:2: not JSON (Expecting property name enclosed in double quotes)"),
    ("[1, 2]", 'edited.json: format: not an ipvs-verify-trace file'),
    ('"ipvs-verify-trace"', "edited.json: format: not an ipvs-verify-trace file"),
])
def test_a_file_that_is_not_a_trace_object(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "edited.json"
    path.write_text(text)
    code, _, err = run_cli("show", str(path))
    assert code == 2 and err.startswith("error: ") and expected in err and err.count("\n") == 1


def test_a_missing_trace_file(tmp_path: Path) -> None:
    code, _, err = run_cli("show", str(tmp_path / "nowhere.json"))
    assert code == 2 and err == f"error: {tmp_path / 'nowhere.json'}: no such file\n"


def test_bad_matrix_options() -> None:
    code, _out, err = run_cli("matrix", "--variants", "K46,4.x")
    assert code == 2 and "kernel version" in err
    code, _out, err = run_cli("matrix", "--modes", "7")
    assert code == 2 and "0..3" in err
    code, _out, err = run_cli("matrix", "--properties", "no-such-property")
    assert code == 2 and "unknown property" in err


@pytest.mark.parametrize("args, expected", [
    (("matrix", "-j", "x"), "'-j' / '--jobs'"),
    (("matrix", "--frob"), "No such option: --frob"),
    (("matrix", "--persistence", "-1"), "'--persistence'"),
    (("matrix", "--protocols", "sctp"), "--protocols: expected"),
    (("matrix", "--search", "fast"), "--search: expected one of packed, packed-python, plain"),
    (("matrix", "--json", "--markdown"), "error: --json and --markdown: expected at most one of them"),
    (("matrix", "--properties", "1,1"), "--properties: expected distinct values, got 'no-new-conn-to-destroyed-pod' "
                                        "twice"),
    (("matrix", "--properties", "1,no-new-conn-to-destroyed-pod"), "--properties: expected distinct values"),
    (("matrix", "--modes", "0,0"), "--modes: expected distinct values, got '0' twice"),
    (("matrix", "--variants", "K46,K46"), "--variants: expected distinct values, got 'K46' twice"),
    (("matrix", "--kube-proxy", "1.30,1.30"), "--kube-proxy: expected distinct values"),
    (("matrix", "--protocols", "tcp,tcp"), "--protocols: expected distinct values"),
    (("matrix", "--pod-network", "flat"), "--pod-network: expected a comma-separated list of routed, bridge, got "
                                          "'flat'"),
    (("matrix", "--pod-network", "bridge,bridge"), "--pod-network: expected distinct values"),
    (("matrix", "--client", "robot"), "--client: expected a comma-separated list of app, load-tester, got 'robot'"),
    (("matrix", "--client", "app,app"), "--client: expected distinct values"),
    (("matrix", "--pod-network", "bridge", "--engine", "bmc"), "SMT engines: the bridge pod network"),
    (("matrix", "--invalid-drop", "--engine", "induction"), "--invalid-drop: the Z3 engines do not encode the "
                                                            "node's INVALID drop; expected --engine explicit"),
    (("matrix", "--update-expected", "--engine", "bmc"), "--update-expected and --engine bmc: expected at most one"),
    (("matrix", "--max-states", "-5"), "'--max-states'"),
    (("matrix", "--depth", "0"), "'--depth'"),
    (("matrix", "--expect", "/nonexistent/manifest.yaml"), "/nonexistent/manifest.yaml: no such manifest file"),
    (("matrix", "--modes", ""), "--variants/--modes/--kube-proxy: expected at least one cell"),
    (("show", "counterexamples/K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json", "--diagram", "--pytest"),
     "error: --diagram and --pytest: expected at most one of them"),
    (("show", "counterexamples/K46-kp1.30-mode0--no-new-conn-to-destroyed-pod.json", "--markdown", "--diagram"),
     "error: --markdown and --diagram: expected at most one of them"),
    (("replay", "scenarios/T01-lifecycle-counters.yaml", "--variant", "K46", "--all-variants"),
     "error: --variant and --all-variants: expected at most one of them"),
    (("replay", "/nonexistent.yaml", "--variant", "K99"), "error: --variant: 'K99' is neither a variant"),
    (("conformance", "--backend", "kvm", "scenarios/conformance/C01-reuse-mode0-healthy.yaml"),
     "--backend: expected uml or qemu, got 'kvm'"),
])
def test_bad_command_line(args: tuple[str, ...], expected: str) -> None:
    code, out, err = run_cli(*args)
    assert code == 2, out + err
    assert expected in err and "Traceback" not in err


def test_bad_command_line_subprocess() -> None:
    r = cli_subprocess("matrix", "--frob")
    assert r.returncode == 2 and "No such option: --frob" in r.stderr and "Traceback" not in r.stderr
