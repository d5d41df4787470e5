"""The second backend: qemu without KVM (TCG) booting Debian's real x86 6.1 kernel.

KVM does not work on this machine kind (a nested "PVM" hypervisor), so qemu emulates the CPU: slower
than User-Mode Linux, but it is the same x86 kernel image Debian ships, on an emulated CPU that does not
depend on the host's features (no AVX workaround). The kernel comes from `apt-get download
linux-image-6.1.0-N-amd64` and `dpkg -x` into a cache directory (never installed on the host), with
`depmod -b` (the package ships no modules.dep). The host's `/` is shared read-only over virtio-9p
(`multidevs=remap`, or /proc/self/ns/net breaks in the guest); a busybox initramfs loads the virtio and 9p
modules, mounts it and hands over to the same init and agent as the UML guest. The console is the
emulated serial port on qemu's stdin/stdout. The guest has no network device (`-nic none`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ipvs_verify.conformance.uml import Guest, KernelUnavailable, run_as_nobody, write_guest_files

QEMU = "/usr/bin/qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
STAGE1_MODULES = ("virtio_pci", "9pnet_virtio", "9p")  # and what they need, in modules.dep's order


def kernel_cache() -> Path:
    env = os.environ.get("IPVS_VERIFY_QEMU_KERNEL")
    if env:
        return Path(env)
    # readable by the unprivileged qemu process (it serves the guest's root over 9p)
    return Path("/var/cache/ipvs-verify/qemu-kernel") if os.geteuid() == 0 else Path.home() / ".cache/ipvs-verify"


def prepare_kernel(cache: Path) -> tuple[Path, str]:
    """(extracted package root, kernel version): download and unpack Debian's linux-image once."""
    for d in sorted(cache.glob("*/lib/modules/*/modules.dep")):
        root, version = d.parents[3], d.parent.name
        if (root / "boot" / f"vmlinuz-{version}").exists():
            return root, version
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise KernelUnavailable(f"no kernel under {cache} and no apt-get to download one")
    out = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"],
                         capture_output=True, text=True).stdout.split()
    names = sorted({w for w in out if w.startswith("linux-image-")}, key=lambda n: int(n.split("-")[3]))
    if not names:
        raise KernelUnavailable("apt-cache knows no linux-image-6.1.0-*-amd64 package")
    pkg = names[-1]
    cache.mkdir(parents=True, exist_ok=True)
    dl = Path(tempfile.mkdtemp(prefix="dl-", dir=cache))
    try:
        r = subprocess.run(["apt-get", "download", pkg], cwd=dl, capture_output=True, text=True)
        debs = list(dl.glob("*.deb"))
        if r.returncode != 0 or not debs:
            raise KernelUnavailable(f"apt-get download {pkg} failed: {r.stderr.strip()[-200:]}")
        root = cache / pkg
        subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True)
        version = pkg.removeprefix("linux-image-")
        subprocess.run(["depmod", "-b", str(root), version], check=True)
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    for p in [cache, *cache.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    return root, version


class QemuGuest(Guest):
    """The same command channel as the UML guest, on qemu TCG."""

    def __init__(self, mem: str = "512M", boot_timeout: float = 180.0) -> None:  # noqa: D107
        if not os.access(QEMU, os.X_OK) or not os.access(BUSYBOX, os.X_OK):
            raise KernelUnavailable("qemu backend needs qemu-system-x86 and busybox-static (apt-get install)")
        self.root, self.version = prepare_kernel(kernel_cache())
        self.binary = QEMU
        self.mem = mem
        self.boot_timeout = boot_timeout
        self.workaround = False  # TCG's CPU does not depend on the host's features
        self.proc = None
        self.dir = None
        self.mem_dir = None
        import queue
        from collections import deque

        self.lines = queue.Queue()
        self.log = deque(maxlen=60)
        self.uname = ""
        self.build = ""
        self.boot_seconds = 0.0
        self._seq = 0

    def boot(self) -> QemuGuest:
        t0 = time.monotonic()
        self._boot_once()
        self.boot_seconds = time.monotonic() - t0
        return self

    def _boot_once(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="ipvs-verify-qemu-"))
        self.dir = d
        write_guest_files(d, self.root)
        initrd = self._initramfs(d)
        user, group = run_as_nobody(d)
        kernel = self.root / "boot" / f"vmlinuz-{self.version}"
        argv = [QEMU, "-accel", "tcg", "-m", self.mem, "-nodefaults", "-no-reboot", "-display", "none",
                "-serial", "stdio", "-nic", "none", "-kernel", str(kernel), "-initrd", str(initrd),
                "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=root,mount_tag=host0",
                "-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(d), "TMPDIR": str(d)}
        self._launch(argv, env, d, user, group)

    def _load_order(self) -> list[str]:
        """STAGE1_MODULES and their dependencies from modules.dep, each after what it needs."""
        deps: dict[str, list[str]] = {}
        for line in (self.root / "lib" / "modules" / self.version / "modules.dep").read_text().splitlines():
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
        by_name = {Path(m).name.removesuffix(".ko"): m for m in deps}
        order: list[str] = []

        def visit(m: str) -> None:
            if m in order:
                return
            for dep in deps.get(m, []):
                visit(dep)
            order.append(m)

        for name in STAGE1_MODULES:
            if name not in by_name:
                raise KernelUnavailable(f"module {name} not in {self.root} (modules.dep)")
            visit(by_name[name])
        return order

    def _initramfs(self, d: Path) -> Path:
        """Stage 1: busybox, the virtio/9p modules, and an init that mounts the host's / and switches to it."""
        ir = d / "initramfs"
        for sub in ("bin", "m", "proc", "dev", "newroot"):
            (ir / sub).mkdir(parents=True)
        shutil.copy(BUSYBOX, ir / "bin" / "busybox")
        order = self._load_order()
        for rel in order:
            shutil.copy(self.root / "lib" / "modules" / self.version / rel, ir / "m" / Path(rel).name)
        (ir / "init").write_text(
            "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\n"
            "mount -t devtmpfs dev /dev\n"
            + "".join(f"insmod /m/{Path(m).name}\n" for m in order)
            + "mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro host0 /newroot\n"
            "mount -o move /dev /newroot/dev\numount /proc\n"
            f"exec switch_root /newroot {d}/init\n")
        (ir / "init").chmod(0o755)
        out = d / "initrd.cpio"
        files = subprocess.run(["find", "."], cwd=ir, capture_output=True, text=True, check=True).stdout
        with out.open("wb") as f:
            subprocess.run([BUSYBOX, "cpio", "-o", "-H", "newc"], cwd=ir, input=files.encode(), stdout=f,
                           stderr=subprocess.DEVNULL, check=True)
        return out
