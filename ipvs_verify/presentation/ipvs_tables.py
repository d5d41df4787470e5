"""The IPVS state of a replayed step as ipvsadm shows it: `ipvsadm -lnc` (the connection entries) and
`ipvsadm -ln` (the service and its real servers), read from the model's State itself.

The model names its hosts rather than numbering them: a client's port is `client-1:port-1` where ipvsadm
prints 10.0.0.2:40000, the service is `VIP:80`, a real server `pod-a:80`. Columns, state names, the
expiry as mm:ss and the counters are ipvsadm's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipvs_verify.model.state import CONTROLLED, OLD_TEMPLATE, DestStatus, State, counters
from ipvs_verify.model.system import System
from ipvs_verify.model.tcp_states import SHORT, TcpState

VIRTUAL = "VIP:80"
PORT = 80  # every real server listens on the service's port (the conformance harness's pods do)


@dataclass(frozen=True)
class ConnRow:
    """One line of `ipvsadm -lnc`, and what the model knows of the entry that ipvsadm does not print."""

    pro: str
    expire: str
    state: str
    source: str
    virtual: str
    destination: str
    model: str  # NFCT cleared, controlled by a template, shadowed by a newer entry ...


@dataclass(frozen=True)
class DestRow:
    """One real server of `ipvsadm -ln` (or, deleted, one kept in the trash that ipvsadm no longer lists)."""

    address: str
    forward: str
    weight: int
    active: int
    inactive: int


@dataclass(frozen=True)
class ServiceView:
    protocol: str
    address: str
    scheduler: str  # with its flags and persistence, as ipvsadm prints them after the address
    dests: list[DestRow]
    trash: list[DestRow]


def _mmss(seconds: int) -> str:
    # ipvsadm.c print_conn(): the expiry as "%02d:%02d" minutes and seconds
    seconds = max(seconds, 0)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _state_name(sys: System, state: int) -> str:
    # ip_vs_proto_udp.c udp_state_name_table: a UDP entry's only state (NORMAL) prints as "UDP"
    return "UDP" if sys.udp else SHORT[TcpState(state)]


def connection_rows(sys: System, st: State) -> list[ConnRow]:
    """The connection table, a flow's entries newest first (the one a lookup finds), then the templates."""
    pro = "UDP" if sys.udp else "TCP"
    rows = []
    for f, flow in enumerate(st.flows):
        for k, e in enumerate(flow.entries):
            notes = [n for on, n in ((not e.nfct, "NFCT cleared"), (e.control == CONTROLLED, "controlled by its "
                                     "template"), (e.control == OLD_TEMPLATE, "controlled by an invalidated template"),
                                    (k > 0, "shadowed by a newer entry")) if on]
            rows.append(ConnRow(pro, _mmss(e.timer), _state_name(sys, e.state), sys.flow_name(f), VIRTUAL,
                                f"{sys.pod_name(e.dest)}:{PORT}", ", ".join(notes)))
    for c, t in enumerate(st.templates):
        if t is not None:
            # a persistence template: client port 0; ip_vs_conn.c ip_vs_state_name() names a template's state
            # from ip_vs_ctpl_state_name_table, NONE until a sync peer assures it
            rows.append(ConnRow(pro, _mmss(t.timer), "NONE", f"client-{c + 1}:0", VIRTUAL,
                                f"{sys.pod_name(t.dest)}:{PORT}", f"persistence template ({t.timeout} s)"))
    return rows


def service_view(sys: System, st: State) -> ServiceView:
    """The virtual service and its real servers in the service's list order (head first, as ipvsadm lists
    svc->destinations); deleted real servers still in the trash are listed apart: ipvsadm does not show them."""
    sched, _, flag = sys.config.scheduler.partition("-")
    text = sched + (f" {sched}-{flag}" if flag else "")  # ipvsadm prints a scheduler flag by name: sh-fallback
    if sys.persistent:
        text += f" persistent {sys.scope.persistence}"

    def row(p: int) -> DestRow:
        active, inactive = counters(st, p)
        return DestRow(f"{sys.pod_name(p)}:{PORT}", "Masq", st.dests[p].weight, active, inactive)

    listed = [row(p) for p in st.order if st.dests[p].status == DestStatus.LINKED]
    trash = [row(p) for p, d in enumerate(st.dests) if d.status == DestStatus.TRASH]
    return ServiceView("UDP" if sys.udp else "TCP", VIRTUAL, text, listed, trash)


# ipvsadm.c's formats: list_conn()/print_conn() for -lnc, print_title()/print_service_entry() for -ln.
# Each line comes with what the model adds that ipvsadm does not print ("" if nothing).
def ipvsadm_lnc(rows: list[ConnRow]) -> list[tuple[str, str]]:
    lines = [("IPVS connection entries", ""),
             (f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination", "")]
    lines += [(f"{r.pro:<3} {r.expire}  {r.state:<11} {r.source:<18} {r.virtual:<18} {r.destination}", r.model)
              for r in rows]
    return lines


def ipvsadm_ln(svc: ServiceView) -> list[tuple[str, str]]:
    lines = [("Prot LocalAddress:Port Scheduler Flags", ""),
             ("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn", ""),
             (f"{svc.protocol}  {svc.address} {svc.scheduler}", "")]
    lines += [(f"  -> {d.address:<28} {d.forward:<7} {d.weight:<6} {d.active:<10} {d.inactive}", "")
              for d in svc.dests]
    lines += [(f"     {d.address:<28} {'':<7} {d.weight:<6} {d.active:<10} {d.inactive}",
               "deleted: in the trash while entries point to it, not listed by ipvsadm") for d in svc.trash]
    return lines
