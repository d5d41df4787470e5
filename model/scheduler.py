"""IPVS schedulers, as pure functions over the service's dest list and the scheduler's own state.

Only rr is modelled so far (kube-proxy's default, `--ipvs-scheduler` empty). A scheduler is an object
with `schedule` and `del_dest`; the model never looks inside its state (an int).
"""

from __future__ import annotations

from typing import Protocol

HEAD = -1  # the list head &svc->destinations: the rr cursor after ip_vs_rr_init_svc()


class Scheduler(Protocol):
    name: str

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int) -> tuple[int, int]:
        """Pick a dest among `order` (head first); returns (dest or -1 for none, new cursor)."""
        ...

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        """The new cursor once `dest` leaves `order` (called before it is unlinked)."""
        ...


class RoundRobin:
    """ip_vs_rr.c: the cursor is the list node of the last dest chosen (or the head)."""

    name = "rr"

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int) -> tuple[int, int]:
        # ip_vs_rr_schedule(): scan after the cursor to the end, then from the head up to the cursor itself;
        # skip weight 0 and OVERLOAD (usable). Nothing usable -> NULL, cursor unchanged.
        start = order.index(cursor) + 1 if cursor in order else 0
        n = len(order)
        for i in range(n):
            k = (start + i) % n
            if usable[k]:
                return order[k], order[k]
        return -1, cursor

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        # ip_vs_rr_del_dest(): a cursor on the deleted dest steps back to the previous node
        if cursor != dest:
            return cursor
        i = order.index(dest)
        return order[i - 1] if i > 0 else HEAD


SCHEDULERS: dict[str, Scheduler] = {"rr": RoundRobin()}
