"""The `StateStore` protocol: every stateful policy operation, each one atomic.

Operations are coroutines so that a networked store (one Redis call each) fits the same
seam; the in-memory store answers without awaiting anything. Keys are plain strings built by
the policies (`rate:<policy>:<subject>`, `ip:1.2.3.4`, `conn:ip:1.2.3.4`, ...).

Time: `now` is the caller's clock. A shared store may use its own clock instead (Redis's, so
that nodes' clocks do not matter); what comes back are durations (`retry_after_seconds`), and
a `Banned.until` is only comparable with another `until` of the same store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from engine.policies.abuse import AbuseOptions, Banned, Verdict
from engine.policies.rate_limit import Admission, TokenBucket

if TYPE_CHECKING:
    from engine.state.memory import MemoryStateStore


class StoreUnavailable(Exception):
    """The store cannot decide now and its profile says to refuse (`on_store_error = "deny"`).

    The guard turns it into a `Deny` with code `unavailable` from the policy that asked.
    """

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(retry_after_seconds)
        self.retry_after_seconds = retry_after_seconds


class StateStore(Protocol):
    async def take(self, key: str, bucket: TokenBucket, now: float) -> Admission:
        """Spend one token of `key`'s bucket (shaped by `bucket` as of now)."""
        ...

    async def strike(self, subject: str, options: AbuseOptions, now: float, kind: str) -> Verdict:
        """Count one strike against `subject`; `Banned` when this or an earlier strike banned."""
        ...

    async def banned(self, subjects: Sequence[str], now: float) -> Banned | None:
        """The running ban among `subjects` that ends last, or None."""
        ...

    async def acquire(self, slots: Sequence[tuple[str, int | None]]) -> int | None:
        """Count one connection on every `(key, cap)`, all or none.

        Returns None when counted, or the index of the first slot already at its cap (a cap of
        None only counts).
        """
        ...

    async def release(self, keys: Sequence[str]) -> None:
        """Undo one `acquire` of `keys`; unknown keys are ignored."""
        ...

    def active_bans(self, now: float) -> list[tuple[str, Banned, int]]:
        """(subject, ban, bans served) of every running ban, for dashboards (best effort)."""
        ...

    def count(self, key: str) -> int:
        """Current connection count of `key` (best effort, for dashboards and tests)."""
        ...

    @property
    def local(self) -> MemoryStateStore:
        """This process's own store, for state that belongs to one connection (its event
        buckets, its error budget). A connection lives on one node: sharing its state would
        only cost a round trip per event."""
        ...

    @property
    def degraded(self) -> str | None:
        """Why the store cannot do its job right now (health reports it), or None."""
        ...

    async def start(self) -> None:
        """Start background work (a shared store's lease heartbeat); the engine calls it."""
        ...

    async def aclose(self) -> None:
        """Stop background work and close connections."""
        ...
