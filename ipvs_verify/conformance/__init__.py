"""Conformance against a real Linux IPVS kernel (issue 6).

`uml.py` boots Debian's User-Mode Linux kernel once and talks to `guest_agent.py` inside it over the
console; `kernel.py` runs a scenario in a kube-proxy-like topology in that guest (client, node and pod
network namespaces, a NAT virtual service, rr); `compare.py` runs the same scenario through the model's
variant for the guest's kernel and compares them step by step.
"""
