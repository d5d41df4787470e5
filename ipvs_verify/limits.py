"""The bounds every input file shares (scenarios, patches, load files): what a value may be, and why."""

from __future__ import annotations

MAX_WAIT = 2_592_000  # 30 days: the longest `wait` step, and the most all of a scenario's waits may add up to
MAX_GRACE = MAX_WAIT  # terminationGracePeriodSeconds
MAX_PERSISTENCE = 86_400  # Kubernetes: sessionAffinityConfig.clientIP.timeoutSeconds is at most 86400
MAX_IPVS_TIMEOUT = 2_147_483  # ip_vs_ctl.c ip_vs_set_timeout(): at most INT_MAX / HZ seconds (HZ 1000)
MAX_WEIGHT = 65_535  # ipvsadm -w: 0..65535
MAX_PODS = 16  # pods + spare_pods
MAX_CT_TIMEOUT = 120  # a conntrack-insert step's timeout: SYN_SENT's (nf_conntrack_proto_tcp.c tcp_timeouts, 6.1)
