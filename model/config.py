"""A checked configuration: kernel variant, kube-proxy release, effective sysctls, timing and scope."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ipvs_verify.model.decision_points import check_hooks
from ipvs_verify.model.kube_proxy import KubeProxyVersion, kube_proxy_version
from ipvs_verify.model.patch import ModelPatch
from ipvs_verify.model.scheduler import SCHEDULERS
from ipvs_verify.model.sysctls import Sysctls
from ipvs_verify.model.tcp_states import DEFAULT_TIMEOUTS, TcpState
from ipvs_verify.model.variants import Variant, parse_kernel_version, resolve_variant


@dataclass(frozen=True)
class Timing:
    """Every duration the model knows, in seconds. Defaults are the real ones."""

    # IPVS entry timeouts per state (ip_vs_proto_tcp.c tcp_timeouts); `ipvsadm --set` changes ES/FW/UDP only
    ipvs_timeouts: tuple[tuple[TcpState, int], ...] = tuple(sorted(DEFAULT_TIMEOUTS.items()))
    client_time_wait: int = 60  # include/net/tcp.h TCP_TIMEWAIT_LEN (only on the side that closes first)
    syn_rto: int = 1  # TCP_TIMEOUT_INIT: first SYN retransmission after 1 s, then 2, 4, ...
    syn_retries: int = 6  # net.ipv4.tcp_syn_retries: connect() fails ~127 s after the first SYN
    grace_period: int = 30  # terminationGracePeriodSeconds default
    sync_delay: int = 1  # kube-proxy --ipvs-min-sync-period (seed 1 s): endpoint change -> syncProxyRules
    check_interval: int = 60  # graceful_termination.go rsCheckDeleteInterval
    # bridge pod network: a neighbour entry for a gone address fails after mcast_solicit (3) probes
    # retrans_time (1 s) apart (net/ipv4/arp.c arp_tbl; net/core/neighbour.c neigh_timer_handler, 6.1); then
    # every queued packet gets ICMP host unreachable (neigh_invalidate -> arp_error_report). Measured on UML
    # 6.1.176: connect() fails 3.11-3.19 s after the SYN (scenarios/conformance/B02-B08)
    neigh_resolve: int = 3
    # a destroyed pod's entry still REACHABLE goes STALE at most reachable_time after its last confirmation:
    # neigh_rand_reach_time(base_reachable_time 30 s) is uniform in [15, 45) s (neighbour.c, arp.c arp_tbl, 6.1);
    # when within that window is the kernel's random draw and the confirmation's age, so the model lets it go
    # STALE at any moment and forces it at 45 s
    neigh_reachable_max: int = 45
    # a packet on a STALE entry starts DELAY (delay_first_probe_time 5 s), then PROBE sends ucast_solicit (3)
    # unicast probes retrans_time (1 s) apart, then FAILED: 8 s in which packets are still sent to the old MAC
    # (__neigh_event_send returns 0 in DELAY and PROBE) and nothing is queued, so nothing gets an ICMP
    neigh_probe: int = 8
    # an orphaned FIN_WAIT1 socket whose FINs get ICMP host unreachable (RFC 6069: tcp_v4_err reverts the backoff,
    # so the RTO stays near TCP_RTO_MIN and `alive` holds): tcp_orphan_retries() gives 8 for tcp_orphan_retries=0,
    # and retransmits_timed_out() gives up tcp_model_timeout(sk, 8, TCP_RTO_MIN) = (2^9 - 1) x 200 ms = 102.2 s
    # after the first FIN (tcp_timer.c, 6.1). Measured on UML 6.1: the port is still held at 95 s, free at 105 s
    # (scenarios/conformance/C31)
    orphan_life: int = 102
    ct_syn_sent: int = 120  # nf_conntrack_proto_tcp.c tcp_timeouts[TCP_CONNTRACK_SYN_SENT] (6.1): 2 min

    def timeout(self, state: TcpState) -> int:
        return dict(self.ipvs_timeouts)[state]

    def with_set_timeouts(self, seconds: dict[str, int]) -> Timing:
        """`ipvsadm --set TCP TCPFIN UDP` (IPVSADM_SET_TIMEOUTS); 0 leaves a timeout as it is."""
        timeouts = dict(self.ipvs_timeouts)
        for key, value in seconds.items():
            if value > 0:
                timeouts[IPVSADM_SET_TIMEOUTS[key]] = value
        return replace(self, ipvs_timeouts=tuple(sorted(timeouts.items())))


# ip_vs_ctl.c ip_vs_set_timeout() (IP_VS_SO_SET_TIMEOUT; kube-proxy --ipvs-tcp-timeout, --ipvs-tcpfin-timeout,
# --ipvs-udp-timeout): the only IPVS timeouts user space can change. TIME_WAIT (120 s) is not among them.
IPVSADM_SET_TIMEOUTS = {"tcp": TcpState.ESTABLISHED, "tcpfin": TcpState.FIN_WAIT, "udp": TcpState.NORMAL}


PROTOCOLS = ("tcp", "udp")
# How the node reaches its pods (docs/model.md): "routed", a /32 route per pod (calico-style: a packet
# to a destroyed pod fails at the route lookup, at once), or "bridge", the pods on a bridge with a subnet
# route (the cni bridge plugin, flannel: the packet is routed, then fails at neighbour resolution)
POD_NETWORKS = ("routed", "bridge")


class UnknownScheduler(ValueError):
    """A scheduler name the model does not have."""


class UnknownPodNetwork(ValueError):
    """A pod network the model does not have."""


@dataclass(frozen=True)
class Scope:
    """How much of the world one search explores. Smallest scope first: its traces read best."""

    clients: int = 1
    ports: int = 1  # ephemeral ports per client
    pods: tuple[str, ...] = ("a", "b")  # running at the start, in the order kube-proxy added them
    spare_pods: tuple[str, ...] = ("c",)  # may be created later (scale-out / rolling update)
    changes: int = 2  # pod deletions, creations and crashes in one run (rolling-update steps)
    crashes: bool = True  # a pod may die abruptly, before kube-proxy knows
    short_requests: bool = True  # connect + close in one step, either side closing first
    long_lived: bool = False  # separate connect / send / close actions
    protocol: str = "tcp"  # the service's protocol: "tcp", or "udp" (clients send datagrams, each answered)
    persistence: int = 0  # sessionAffinity ClientIP: the persistent service's timeout in seconds (0: none)
    # a client host may lose an established connection without a packet (it crashed, or its container
    # restarted with the pod's address kept) and connect again from the same port at once
    client_crashes: bool = False
    # a client may close with a RST (SO_LINGER 0) instead of a FIN: no TIME_WAIT on its side, IPVS's entry
    # in CLOSE (10 s), the node's conntrack entry in CLOSE, which the next SYN of the tuple reopens
    client_resets: bool = False
    # the client binds its source ports (load testers, proxies): connect() takes over the port's own TIME_WAIT
    # at once (tcp_ipv4.c tcp_twsk_unique: a bound socket passes no twp, timestamps suffice); an ephemeral port
    # waits the 60 s out (tcp_tw_reuse=2 reuses only loopback ports)
    bound_ports: bool = False
    # kube-proxy's deleteRsFunc reads a real server's counters (GetRealServers) and then deletes it
    # (DeleteRealServer): a packet may pass between the two netlink calls (graceful_termination.go, 1.30)
    kp_window: bool = False

    @property
    def all_pods(self) -> tuple[str, ...]:
        return self.pods + self.spare_pods

    @property
    def flows(self) -> int:
        return self.clients * self.ports

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol '{self.protocol}' (expected one of: {', '.join(PROTOCOLS)})")

    def describe(self) -> str:
        conns = "+".join(k for k, on in (("short", self.short_requests), ("long", self.long_lived)) if on)
        if self.protocol == "udp":
            conns = "UDP datagram"
        if self.persistence:
            conns += f", persistence {self.persistence} s"
        return (
            f"{self.clients} client x {self.ports} port, pods {','.join(self.pods)}"
            f"{' +' + ','.join(self.spare_pods) if self.spare_pods else ''}, {self.changes} changes, "
            f"{'crashes, ' if self.crashes else ''}{'client crashes, ' if self.client_crashes else ''}"
            f"{'client resets, ' if self.client_resets else ''}{'bound ports, ' if self.bound_ports else ''}"
            f"{'read/delete window, ' if self.kp_window else ''}{conns} "
            "connections"
        )


@dataclass(frozen=True)
class Config:
    variant: Variant
    kube_proxy: KubeProxyVersion
    kernel: str  # the kernel version kube-proxy reads (the variant's representative unless given)
    sysctls: Sysctls  # effective: kernel defaults, then kube-proxy's start-up sysctls, then overrides
    overrides: tuple[tuple[str, int], ...] = ()
    scope: Scope = field(default_factory=Scope)
    timing: Timing = field(default_factory=Timing)
    scheduler: str = "rr"
    nf_conntrack: bool = True  # conntrack active in the node's netns (kube-proxy's iptables rules need it)
    # the node's filter FORWARD drops packets conntrack finds INVALID (`-m conntrack --ctstate INVALID -j DROP`):
    # kube-proxy's iptables mode installs it (KUBE-FORWARD, #74840, 1.15; not when nf_conntrack_tcp_be_liberal is
    # set, #120412, 1.29), its IPVS mode never does (pkg/proxy/ipvs/proxier.go writeIptablesRules, 1.11 to 1.30),
    # Calico's felix does unless DisableConntrackInvalidCheck. What it changes here: a pod's SYN-ACK that no
    # conntrack entry expects (model/datapath.py _reply_invalid)
    invalid_drop: bool = False
    pod_network: str = "routed"  # POD_NETWORKS
    patches: tuple[ModelPatch, ...] = ()  # applied in this order (model/patch.py); variant is the patched one
    kube_proxy_last: bool = False  # make_config: kube-proxy's start-up sysctls applied over the overrides

    @property
    def label(self) -> str:
        over = ",".join(f"{k}={v}" for k, v in self.overrides)
        return f"{self.variant.name} kp{self.kube_proxy.text}" + (f" [{over}]" if over else "")

    @property
    def base_variant(self) -> str:
        """The variant the patches were applied to (a patched variant's name is BASE+ID+...)."""
        return self.variant.name.partition("+")[0]


def _set_sysctls(s: Sysctls, values: tuple[tuple[str, int], ...]) -> Sysctls:
    """Sysctls written as numbers: conn_reuse_mode a bitmap, the rest booleans."""
    if not values:
        return s
    return s.with_(**{k: (bool(val) if k != "conn_reuse_mode" else int(val)) for k, val in values})


def make_config(
    variant: str,
    kube_proxy: str = "1.30",
    overrides: dict[str, int] | None = None,
    scope: Scope | None = None,
    timing: Timing | None = None,
    kernel: str | None = None,
    nf_conntrack: bool = True,
    scheduler: str = "rr",
    pod_network: str = "routed",
    patches: tuple[ModelPatch, ...] = (),
    kube_proxy_last: bool = False,
    invalid_drop: bool = False,
) -> Config:
    """Build a Config; raises ValueError subclasses with a user-facing message on bad input.

    `patches` change it in the order model/patch.py gives, after the cell's own settings. `kube_proxy_last`:
    the overrides (and patches' sysctls) are what the node had when kube-proxy (re)started, so its start-up
    sysctls win over them (EnsureSysctl); otherwise an override is set after kube-proxy started, and wins.
    """
    if pod_network not in POD_NETWORKS:
        raise UnknownPodNetwork(f"unknown pod network '{pod_network}' (expected one of: {', '.join(POD_NETWORKS)})")
    if invalid_drop and not nf_conntrack:
        raise ValueError("invalid_drop needs nf_conntrack: a rule matching --ctstate is a conntrack user (it makes "
                         "the node track connections)")
    if scheduler not in SCHEDULERS:
        raise UnknownScheduler(f"unknown scheduler '{scheduler}' (expected one of: {', '.join(SCHEDULERS)})")
    v = resolve_variant(variant)
    kp = kube_proxy_version(kube_proxy)
    kernel_text = kernel or (variant if variant[:1].isdigit() else v.representative)
    for p in patches:
        v, kp = p.apply_variant(v), p.apply_kube_proxy(kp)
    version = parse_kernel_version(kernel_text)
    s = kp.startup_sysctls(Sysctls(), version)
    over = tuple(sorted((overrides or {}).items()))
    s = _set_sysctls(s, over)
    scope, timing = scope or Scope(), timing or Timing()
    for p in patches:
        s = _set_sysctls(s, p.sysctls)
        timing = replace(timing.with_set_timeouts(dict(p.ipvs_timeouts)), **dict(p.timing))  # type: ignore[arg-type]
        scope = replace(scope, **dict(p.scope))  # type: ignore[arg-type]
    if kube_proxy_last:
        s = kp.startup_sysctls(s, version)  # EnsureSysctl at kube-proxy's start, over the node's settings
    if patches:
        check_hooks(v, s)
        check_hooks(kp, s)
    return Config(
        variant=v, kube_proxy=kp, kernel=kernel_text, sysctls=s, overrides=over,
        scope=scope, timing=timing, nf_conntrack=nf_conntrack, scheduler=scheduler,
        pod_network=pod_network, patches=patches, kube_proxy_last=kube_proxy_last, invalid_drop=invalid_drop,
    )
