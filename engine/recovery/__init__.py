"""Connection state recovery, the Socket.IO way (socket.io >= 4.6 and its official clients).

- `options`: `[namespaces."<ns>".recovery]`;
- `store`: the `RecoveryStore` protocol (history with offsets, sessions by private id);
- `memory`: the one-process store;
- `adapter`: `Recovery`, what `engine.server` calls at CONNECT, emit and disconnect.
"""

from engine.recovery.adapter import Claim, Recovery
from engine.recovery.memory import MemoryRecoveryStore
from engine.recovery.options import RecoveryOptions
from engine.recovery.store import Fence, RecoveryStore, Restored, Session, Stored

__all__ = [
    "Claim",
    "Fence",
    "MemoryRecoveryStore",
    "Recovery",
    "RecoveryOptions",
    "RecoveryStore",
    "Restored",
    "Session",
    "Stored",
]
