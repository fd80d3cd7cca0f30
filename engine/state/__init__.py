"""Policy state (token buckets, strikes and bans, connection counts) behind one interface.

The pure policies in `engine.policies` define the semantics; a `StateStore` keeps the state
they decide on. State lives in the engine, not in a runtime: a reload that keeps a policy
keeps its keys, so a client's bucket and a ban survive it, and the bucket parameters come with
every call, so a changed limit applies to the existing bucket. `MemoryStateStore` is the
single-process store; a shared store (Redis) implements the same protocol.
"""

from engine.state.memory import MemoryStateStore
from engine.state.store import StateStore

__all__ = ["MemoryStateStore", "StateStore"]
