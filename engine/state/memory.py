"""Single-process policy state in bounded memory.

Buckets that are full again and abuse records that no longer affect any verdict are
forgotten (a full bucket and no record are indistinguishable from fresh), so memory tracks
active clients, not every client ever seen. A bucket is forgotten when it is full under the
shape it was last charged with; if a reload slows its refill rate before that, the client keeps
the refill it earned under the old limit. When `max_keys` buckets are all still refilling,
a *new* key is refused (fail closed) rather than evicting one that could be reset by flooding
the table with fresh keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.policies._expiry import ExpiryIndex, delay_until
from engine.policies.abuse import (
    ALLOWED,
    AbuseOptions,
    Banned,
    SubjectRecord,
    Verdict,
    canonical_subject,
    check_record,
    strike_record,
)
from engine.policies.rate_limit import Admission, BucketState, TokenBucket, full_at, take

__all__ = ["MemoryStateStore"]


class MemoryStateStore:
    """The in-memory `StateStore`."""

    def __init__(self, max_keys: int = 100_000, max_subjects: int = 100_000) -> None:
        self.max_keys = max_keys
        self.max_subjects = max_subjects
        self._buckets: dict[str, BucketState] = {}
        self._bucket_expiry = ExpiryIndex()
        self._records: dict[str, SubjectRecord] = {}
        self._record_expiry = ExpiryIndex()
        self._counts: dict[str, int] = {}
        self.overflow_refusals = 0
        self.untracked_subjects = 0

    @property
    def local(self) -> MemoryStateStore:
        return self

    # -- token buckets -----------------------------------------------------------------------

    async def take(self, key: str, bucket: TokenBucket, now: float) -> Admission:
        return self.take_now(key, bucket, now)

    def take_now(self, key: str, bucket: TokenBucket, now: float) -> Admission:
        for due in self._bucket_expiry.pop_due(now):
            del self._buckets[due]
        state = self._buckets.get(key)
        if state is None and len(self._buckets) >= self.max_keys:
            self.overflow_refusals += 1
            top = self._bucket_expiry.peek()
            assert top is not None
            return Admission(False, delay_until(now, top[0]))
        if state is not None and state.tokens > bucket.burst:
            state = BucketState(float(bucket.burst), state.updated)  # a limit was lowered
        admission, new_state = take(bucket, state, now)
        self._buckets[key] = new_state
        self._bucket_expiry.set(key, full_at(bucket, new_state))
        return admission

    def bucket(self, key: str) -> BucketState | None:
        return self._buckets.get(key)

    def bucket_keys(self) -> list[str]:
        return list(self._buckets)

    # -- strikes and bans --------------------------------------------------------------------

    async def strike(self, subject: str, options: AbuseOptions, now: float, kind: str) -> Verdict:
        subject = canonical_subject(subject)
        for due in self._record_expiry.pop_due(now):
            del self._records[due]
        record = self._records.get(subject)
        if record is None and len(self._records) >= self.max_subjects:
            self.untracked_subjects += 1
            return ALLOWED
        verdict, record = strike_record(options, record, now, kind)
        self._records[subject] = record
        self._record_expiry.set(subject, record.forget_at(options))
        return verdict

    async def banned(self, subjects: Sequence[str], now: float) -> Banned | None:
        if not self._records:
            return None  # no strikes held: no subject can be banned
        latest: Banned | None = None
        for subject in subjects:
            verdict = check_record(self._records.get(canonical_subject(subject)), now)
            if isinstance(verdict, Banned) and (latest is None or verdict.until > latest.until):
                latest = verdict
        return latest

    def record(self, subject: str) -> SubjectRecord | None:
        return self._records.get(canonical_subject(subject))

    def active_bans(self, now: float) -> list[tuple[str, Banned, int]]:
        bans = []
        for subject, record in self._records.items():
            until = record.banned_until
            if until is not None and until > now:
                bans.append((subject, Banned(until, until - now, record.reason), record.bans))
        return bans

    # -- connection counts -------------------------------------------------------------------

    async def acquire(self, slots: Sequence[tuple[str, int | None]]) -> int | None:
        counts = self._counts
        for index, (key, cap) in enumerate(slots):
            if cap is not None and counts.get(key, 0) >= cap:
                return index
        for key, _ in slots:
            counts[key] = counts.get(key, 0) + 1
        return None

    async def release(self, keys: Sequence[str]) -> None:
        counts = self._counts
        for key in keys:
            count = counts.get(key, 0)
            if count <= 1:
                counts.pop(key, None)
            else:
                counts[key] = count - 1

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    @property
    def degraded(self) -> str | None:
        return None

    async def start(self) -> None:
        """Nothing runs in the background."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def sizes(self) -> dict[str, int]:
        """How many entries each table holds (leak checks, dashboards)."""
        return {
            "buckets": len(self._buckets),
            "subjects": len(self._records),
            "counters": len(self._counts),
        }
