"""Several engine processes as one cluster: the broker options, the balancer in front of them,
the rules a combination must satisfy (`compat`) and the balancer configurations
(`lbconfig`). Everything here is pure; the broker runtime builds on `ClusterOptions`."""

from engine.cluster.options import BalancerNode, BalancerOptions, ClusterOptions

__all__ = ["BalancerNode", "BalancerOptions", "ClusterOptions"]
