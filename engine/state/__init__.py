"""Policy state (token buckets, strikes and bans, connection counts) behind one interface.

The pure policies in `engine.policies` define the semantics; a `StateStore` keeps the state
they decide on. State lives in the engine, not in a runtime: a reload that keeps a policy
keeps its keys, so a client's bucket and a ban survive it, and the bucket parameters come with
every call, so a changed limit applies to the existing bucket. `MemoryStateStore` is the
single-process store; `RedisStateStore` (`engine.state.redis`, the `redis` extra) shares the
state between the nodes of a cluster, behind a `FallbackStateStore` that decides per node (or
refuses) while Redis is unreachable. `build_store` picks from `[cluster]`.
"""

from __future__ import annotations

from engine.cluster.options import ClusterOptions
from engine.state.memory import MemoryStateStore
from engine.state.store import StateStore, StoreUnavailable

__all__ = ["MemoryStateStore", "StateStore", "StoreUnavailable", "build_store"]


def build_store(cluster: ClusterOptions, *, max_keys: int) -> StateStore:
    """The store for `[cluster]`: memory for one process; Redis (with a per-node fallback, as
    `on_store_error` says) for ``adapter = "redis"``. Nothing connects until `start()`."""
    local = MemoryStateStore(max_keys=max_keys)
    if cluster.adapter != "redis":
        return local
    from engine.state.fallback import FallbackStateStore
    from engine.state.redis import RedisStateStore

    primary = RedisStateStore.from_options(cluster)
    return FallbackStateStore(primary, local, cluster.on_store_error)
