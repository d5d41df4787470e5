"""Boot Debian's User-Mode Linux 6.1 kernel and talk to the agent inside it over the console.

Setup (../shared/reference/real-kernel.md): the root filesystem is the host's `/`, read-only through
hostfs; the console is the UML process's stdin/stdout (`con=null con0=fd:0,fd:1`); the process runs as
`nobody` with HOME and uml_dir in a private temp directory; modules come from /usr/lib/uml/modules
through a `modprobe -d` layout (and /proc/sys/kernel/modprobe points at a wrapper, so the kernel's own
module requests work). The guest has no network device.

On a host CPU whose XSAVE area is larger than the 832 bytes UML 6.1 passes to
PTRACE_SETREGSET(NT_X86_XSTATE) (AVX-512, AMX or PKU), the guest panics at its first process
("ptrace set fp regs failed"). The workaround, applied when the CPU flags show such a feature (or when
a plain boot fails that way): a seccomp filter makes that one ptrace request fail with EIO, so UML falls
back to PTRACE_GETFPREGS/SETFPREGS, and the guest's userland is kept off AVX code paths
(GLIBC_TUNABLES, OPENSSL_ia32cap), since the legacy path does not preserve wide registers.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

UML_BINARIES = ("/usr/bin/linux.uml", "/usr/bin/linux")
UML_MODULES = Path("/usr/lib/uml/modules")
GUEST_TOOLS = ("/usr/sbin/ipvsadm", "/usr/sbin/ip", "/usr/sbin/modprobe", "/usr/sbin/iptables-legacy",
               "/usr/sbin/conntrack", "/usr/bin/python3")
AGENT = Path(__file__).with_name("guest_agent.py")
WIDE_XSAVE_FLAGS = {"avx512f", "amx_tile", "ospke", "pku"}
NO_AVX_ENV = {
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,"
                      "-AVX_Fast_Unaligned_Load,-XSAVEC",
    "LD_BIND_NOW": "1",
    "OPENSSL_ia32cap": "~0x200000000000000:~0xd0230020",  # CPUID.1:ECX AVX; CPUID.7:EBX AVX2, AVX-512
}


class KernelUnavailable(Exception):
    """The real kernel cannot be prepared here (package missing, boot failure): the reason is the message."""


class GuestError(Exception):
    """A command failed inside the guest."""


def find_uml() -> tuple[str, str]:
    """(binary, kernel version) of the installed UML kernel, or KernelUnavailable naming what is missing."""
    binary = next((b for b in UML_BINARIES if os.access(b, os.X_OK)), None)
    if binary is None:
        raise KernelUnavailable("no User-Mode Linux kernel (apt-get install user-mode-linux)")
    versions = sorted(p.name for p in UML_MODULES.iterdir()) if UML_MODULES.is_dir() else []
    if not versions:
        raise KernelUnavailable(f"no UML modules under {UML_MODULES} (apt-get install user-mode-linux)")
    missing = [t for t in GUEST_TOOLS if not os.access(t, os.X_OK)]
    if missing:
        pkgs = {"ipvsadm": "ipvsadm", "ip": "iproute2", "modprobe": "kmod", "iptables-legacy": "iptables",
                "conntrack": "conntrack", "python3": "python3"}
        names = " ".join(sorted({pkgs[Path(m).name] for m in missing}))
        raise KernelUnavailable(f"missing {', '.join(missing)} (apt-get install {names})")
    return binary, versions[-1]


def cpu_needs_workaround() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(WIDE_XSAVE_FLAGS & set(line.split(":", 1)[1].split()))
    return False


# ------------------------------------------------------------------ the seccomp filter (workaround part 1)
def _xstate_filter() -> bytes:
    """BPF: ptrace(PTRACE_GETREGSET|PTRACE_SETREGSET, pid, NT_X86_XSTATE, ...) -> EIO; all else allowed.
    UML's arch/um/os-Linux/registers.c then falls back to PTRACE_GETFPREGS (save_fp_registers)."""
    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    allow, eio = 0x7FFF0000, 0x00050000 | 5  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EIO
    prog = [
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 0, 7, 0xC000003E),  # AUDIT_ARCH_X86_64, else allow
        (ld, 0, 0, 0),  # nr
        (jeq, 0, 5, 101),  # __NR_ptrace, else allow
        (ld, 0, 0, 16),  # args[0] (request), low word
        (jeq, 1, 0, 0x4204),  # PTRACE_GETREGSET
        (jeq, 0, 2, 0x4205),  # PTRACE_SETREGSET, else allow
        (ld, 0, 0, 32),  # args[2] (the regset type), low word
        (jeq, 1, 0, 0x202),  # NT_X86_XSTATE -> EIO
        (ret, 0, 0, allow),
        (ret, 0, 0, eio),
    ]
    import struct

    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)


def _install_filter() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    code = _xstate_filter()
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(code) // 8, ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


# ------------------------------------------------------------------ the guest
def write_guest_files(d: Path, moddir: Path) -> None:
    """The agent, the guest's init (the last stage: proc, sys, a tmpfs /run, then the agent) and a modprobe
    wrapper with the `-d` layout, so the kernel's own module requests find the modules too."""
    shutil.copy(AGENT, d / "guest_agent.py")
    (d / "modprobe").write_text(f'#!/bin/sh\nexec /usr/sbin/modprobe -d {moddir} "$@"\n')
    (d / "init").write_text(
        "#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PATH\n"
        "mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t tmpfs -o mode=755 tmpfs /run\n"
        f"echo {d}/modprobe > /proc/sys/kernel/modprobe\n"
        f"exec /usr/bin/python3 -I -S -B -u {d}/guest_agent.py {d} {moddir}\n")
    for f in ("modprobe", "init"):
        (d / f).chmod(0o755)


def run_as_nobody(*dirs: Path) -> tuple[int | None, int | None]:
    """The (uid, gid) to run the guest process as: nobody when we are root (the dirs become its own)."""
    for p in dirs:
        p.chmod(0o755)
    if os.geteuid() != 0:
        return None, None
    pw = pwd.getpwnam("nobody")
    for p in dirs:
        os.chown(p, pw.pw_uid, pw.pw_gid)
    return pw.pw_uid, pw.pw_gid


class Guest:
    """One booted UML kernel with the agent running; `call()` sends one command and waits for its answer."""

    def __init__(self, mem: str = "256M", boot_timeout: float = 60.0, workaround: bool | None = None) -> None:
        self.binary, self.version = find_uml()
        self.mem = mem
        self.boot_timeout = boot_timeout
        self.workaround = cpu_needs_workaround() if workaround is None else workaround
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None
        self.mem_dir: Path | None = None
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.log: deque[str] = deque(maxlen=60)
        self.uname = ""
        self.build = ""
        self.boot_seconds = 0.0
        self._seq = 0

    # -------------------------------------------------------------- boot
    def boot(self) -> Guest:
        t0 = time.monotonic()
        try:
            self._boot_once()
        except KernelUnavailable as e:
            self.close()
            if self.workaround or "ptrace set fp regs failed" not in str(e):
                raise
            self.workaround = True  # the CPU flags did not say so, but the boot failed the known way
            self._boot_once()
        self.boot_seconds = time.monotonic() - t0
        return self

    def _boot_once(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="ipvs-verify-uml-"))
        self.dir = d
        (d / "uml").mkdir()
        (d / "mods" / "lib" / "modules").mkdir(parents=True)
        (d / "mods" / "lib" / "modules" / self.version).symlink_to(UML_MODULES / self.version)
        write_guest_files(d, d / "mods")
        user, group = run_as_nobody(d, d / "uml")
        # UML's memory is a file in TMPDIR: on tmpfs if there is one (it warns and is slower otherwise)
        shm = Path("/dev/shm")
        mem_dir = Path(tempfile.mkdtemp(prefix="ipvs-verify-uml-", dir=shm)) if shm.is_dir() and os.access(
            shm, os.W_OK) else d
        self.mem_dir = mem_dir
        if user is not None:
            os.chown(mem_dir, user, group if group is not None else -1)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(d), "TMPDIR": str(mem_dir)}
        argv = [self.binary, f"mem={self.mem}", "rootfstype=hostfs", "rootflags=/", "ro", f"init={d}/init",
                "con=null", "con0=fd:0,fd:1", f"uml_dir={d}/uml", "quiet", "loglevel=1"]
        if self.workaround:
            argv += [f"{k}={v}" for k, v in NO_AVX_ENV.items()]  # the kernel passes them to init's environment
        self._launch(argv, env, d, user, group, _install_filter if self.workaround else None)

    def _launch(self, argv: list[str], env: dict[str, str], cwd: Path, user: int | None, group: int | None,
                preexec: Any = None) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            user=user, group=group, start_new_session=True, preexec_fn=preexec,
        )
        threading.Thread(target=self._reader, args=(self.proc,), daemon=True).start()
        ready = self._wait(self.boot_timeout, boot=True)
        self.uname = ready["uname"]
        self.build = ready.get("build", "")  # uname -v: Debian's kernels name their real version here
        bad = [m for m in ready.get("modules", []) if m[1] != 0]
        if bad:
            raise KernelUnavailable(f"modprobe failed in the guest: {bad}")

    def _reader(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        buf = b""
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                at = line.find("@@R ")
                if at >= 0:
                    try:
                        self.lines.put(json.loads(line[at + 4:]))
                        continue
                    except ValueError:
                        pass
                self.log.append(line)
        self.lines.put(None)

    def _wait(self, timeout: float, boot: bool = False) -> dict[str, Any]:
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            what = "boot" if boot else "an answer"
            raise KernelUnavailable(f"UML: no {what} within {timeout:.0f} s; last output: {self._tail()}") from None
        if msg is None:
            raise KernelUnavailable(f"UML exited; last output: {self._tail()}")
        return msg

    def _tail(self) -> str:
        lines = [x.strip() for x in self.log if x.strip()]
        return " | ".join(lines[-8:]) or "(none)"

    # -------------------------------------------------------------- commands
    def call(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self._seq += 1
        msg = {"op": op, "id": self._seq, **args}
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            res = self._wait(timeout)
            if res.get("id") == self._seq:
                break
        if not res.get("ok"):
            raise GuestError(f"{op}: {res.get('error')}")
        return res

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(b'{"op": "halt"}\n')
                    proc.stdin.flush()
                    proc.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own UML process group (start_new_session)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        for d in (self.dir, self.mem_dir):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        self.dir = self.mem_dir = None

    def __enter__(self) -> Guest:
        return self.boot()

    def __exit__(self, *exc: object) -> None:
        self.close()
