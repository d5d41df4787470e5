"""How a Linux client picks the source port of a connect() without bind(): net/ipv4/inet_hashtables.c
__inet_hash_connect(), for one client address calling one destination (the service's VIP:port).

Both forms share the scan (07f4c90062f8 "tcp/dccp: try to not exhaust ip_local_port_range in connect()", v4.6):
`remaining` = the range's size made even; `offset` = (a per-boot counter + port_offset) % remaining, made even;
scan the ports of low's parity from low + offset in steps of 2 (wrapping), then the other parity; take the first
port whose 4-tuple is free; none: EADDRNOTAVAIL. port_offset = secure_ipv4_port_ephemeral(saddr, daddr, dport),
a keyed hash, constant for one client and one destination: drawn here from the run's seed.

* `hint` (4.6 .. the 2022 fixes): the counter is one static `hint`; on success `hint += i + 2` (i: the scan's
  index), so one client walks its even ports one after the other, skipping busy ones.
* `perturb` (190cc82489f4 "tcp: change source port randomizarion at connect() time", v5.12; the 2022
  "tcp: add small random increments to the source port" of Willy Tarreau, also in the stable trees then): the
  counter is table_perturb[hash(port_offset)]; on success `i = max(i, (prandom_u32() & 7) * 2)` and the counter
  grows by i + 2: a stride of 2 to 16, drawn from the seed. (Which stable releases took it: UNVERIFIED.)

A port is busy when this client has a socket on that 4-tuple: SYN_SENT, ESTABLISHED, or its own TIME_WAIT
(TCP_TIMEWAIT_LEN 60 s, include/net/tcp.h), which connect() reuses only under tcp_tw_reuse, whose default 2
(since v4.19) allows it for loopback traffic only (tcp_twsk_unique): never towards a service VIP. The caller
says which ports are busy (the model's client socket of each port: Sock.FREE or not). Other destinations of the
same client, reserved ports (ip_local_reserved_ports) and bind()-ers are not modelled: no port is taken by them.
"""

from __future__ import annotations

import random
from collections.abc import Callable

U32 = 0xFFFFFFFF


class PortAllocator:
    """The source ports one client address picks towards the service, in order."""

    def __init__(self, low: int, high: int, policy: str, rng: random.Random) -> None:
        if policy not in ("hint", "perturb"):
            raise ValueError(f"unknown port selection '{policy}' (expected hint or perturb)")
        self.low = low
        self.size = high - low + 1  # kernel: high++ then remaining = high - low
        self.remaining = self.size & ~1 if self.size > 1 else self.size
        self.policy = policy
        self.rng = rng
        self.port_offset = rng.getrandbits(32)
        self.counter = 0  # hint, or this destination's table_perturb entry (zero at boot)
        self.scanned = 0  # ports looked at, over the run (a measure of the client's contention)

    def pick(self, busy: Callable[[int], bool]) -> int:
        """The index (port - low) of the next port connect() takes, or -1 (EADDRNOTAVAIL)."""
        remaining, size = self.remaining, self.size
        offset = ((self.counter + self.port_offset) & U32) % remaining
        offset &= ~1  # first pass: ports of low's parity
        for _parity in range(2):
            k = offset
            for i in range(0, remaining, 2):
                if k >= size:
                    k -= remaining
                if not busy(k):
                    self.scanned += i // 2 + 1
                    if self.policy == "perturb":
                        i = max(i, (self.rng.getrandbits(32) & 7) * 2)
                    self.counter = (self.counter + i + 2) & U32
                    return k
                k += 2
            self.scanned += remaining // 2
            offset += 1
            if not (offset & 1 and remaining > 1):
                break
        return -1
