"""Connection state recovery, the Socket.IO way (socket.io >= 4.6 and its official clients).

- `options`: `[namespaces."<ns>".recovery]`;
- `store`: the `RecoveryStore` protocol (history with offsets, sessions by private id);
- `memory`: the one-process store;
- `redis`: the store shared by the nodes of a cluster (`[cluster] adapter = "redis"`);
- `adapter`: `Recovery`, what `engine.server` calls at CONNECT, emit and disconnect.
"""

from engine.cluster.options import ClusterOptions
from engine.recovery.adapter import Claim, Recovery
from engine.recovery.memory import MemoryRecoveryStore
from engine.recovery.options import RecoveryOptions
from engine.recovery.store import (
    Fence,
    RecoveryStore,
    RecoveryUnavailable,
    Restored,
    Session,
    Stored,
)


def build_recovery_store(cluster: ClusterOptions) -> RecoveryStore:
    """The store for `[cluster]`: memory for one process, Redis (shared by every node) for
    ``adapter = "redis"``. Nothing connects before the first call."""
    if cluster.adapter != "redis":
        return MemoryRecoveryStore()
    from engine.recovery.redis import RedisRecoveryStore

    return RedisRecoveryStore.from_options(cluster)


__all__ = [
    "Claim",
    "Fence",
    "MemoryRecoveryStore",
    "Recovery",
    "RecoveryOptions",
    "RecoveryStore",
    "RecoveryUnavailable",
    "Restored",
    "Session",
    "Stored",
    "build_recovery_store",
]
