"""`ipvs-verify conformance`: boot the real kernel once, run every scenario in it and through the model."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from ipvs_verify.conformance.compare import (
    Comparison,
    comparison_json,
    default_scenarios,
    print_comparison,
    run_conformance,
)
from ipvs_verify.conformance.uml import Guest, GuestError, KernelUnavailable
from ipvs_verify.errors import UserError
from ipvs_verify.scenario import load_scenario


def conformance_command(paths: list[Path], slow: bool, as_json: bool, out: Console, err: Console,
                        backend: str = "uml") -> int:
    """0: every comparable scenario matches; 1: a mismatch; 3: the kernel could not be prepared or run."""
    import json

    paths = paths or default_scenarios(include_slow=slow)
    for p in paths:
        load_scenario(p)  # bad input is reported before the boot (UserError, exit 2)
    if backend not in ("uml", "qemu"):
        raise UserError(f"--backend: expected uml or qemu, got '{backend}'")
    try:
        if backend == "qemu":
            from ipvs_verify.conformance.qemu import QemuGuest

            guest: Guest = QemuGuest()
        else:
            guest = Guest()
        guest.boot()
    except KernelUnavailable as e:
        err.print(f"error: the real kernel is not available: {e}", highlight=False, markup=False)
        return 3
    t0 = time.monotonic()
    results: list[Comparison]
    try:
        if not as_json:
            kind = "qemu TCG" if backend == "qemu" else "User-Mode Linux"
            out.print(f"kernel {guest.uname} ({kind}; {guest.build}), booted in {guest.boot_seconds:.1f} s; "
                      f"AVX/XSTATE workaround {'applied' if guest.workaround else 'not needed'}", highlight=False)
        results = run_conformance(guest, paths)
    except (KernelUnavailable, GuestError) as e:
        err.print(f"error: the guest failed during the run: {e}", highlight=False, markup=False)
        return 3
    finally:
        guest.close()
    if as_json:
        for c in results:
            print(json.dumps(comparison_json(c, guest.uname)))
    else:
        for c in results:
            print_comparison(c, out)
        counts = {s: sum(1 for c in results if c.status == s) for s in ("match", "MISMATCH", "not comparable")}
        out.print(f"{len(results)} scenarios on kernel {guest.uname}: {counts['match']} match, "
                  f"{counts['MISMATCH']} mismatch, {counts['not comparable']} not comparable "
                  f"({time.monotonic() - t0:.1f} s after a {guest.boot_seconds:.1f} s boot)", highlight=False)
    return 0 if all(c.status != "MISMATCH" for c in results) else 1
