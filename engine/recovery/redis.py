"""`RedisRecoveryStore`: history and disconnected sessions in Redis, shared by every node.

Keys (prefix ``engine:<cluster channel>:rec:``, beside the policy store's keys):

- ``h:<namespace>``, a stream: the history, one entry per recoverable event (fields ``e``
  event, ``a`` arguments JSON, ``r`` rooms JSON or empty for the whole namespace, ``x``
  exclusions JSON, ``b`` binary flag, ``s`` size, ``t`` Redis time in ms);
- ``m:<namespace>``, a hash: the history's epoch ``e``, last seq ``l``, cut ``c`` (no offset
  below it is recoverable) and bytes ``b``;
- ``s:<namespace>:<pid>``, a string (JSON): a disconnected session, expiring after
  ``max_disconnection_seconds``.

Offsets are the stream ids, ``<epoch>-<seq>``: the epoch is Redis's time (ms) when the
history was created, so an offset from before the keys were lost is unknown, never misread.
Every operation is one Lua script (`lua/*.lua`, `_common.lua` prepended), so a concurrent
append or trim can never make a restore read part of what it checked: `append` adds and trims
(``max_events``, ``max_bytes``, events older than ``max_disconnection_seconds``) and moves the
cut; `restore` checks that the offset is at or after the cut, takes the session (GET + DEL:
once, recovered or not) and reads the range in one step. Time is Redis's (the stream entry's
``t``, the session's TTL): the `now` arguments are ignored.

The events a namespace's history returns are filtered by room here, in Python. An append that
fails (Redis unreachable) raises `RecoveryUnavailable`; the next successful one marks the gap
(the cut moves past every earlier offset), so a client that missed an event emitted during the
outage is never restored with a partial replay.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson

from engine.auth import Identity
from engine.cluster.options import ClusterOptions
from engine.recovery.options import RecoveryOptions
from engine.recovery.store import Fence, RecoveryUnavailable, Restored, Session, Stored

try:
    from redis.exceptions import RedisError

    FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
except ImportError:  # pragma: no cover - the `redis` extra is not installed
    FAILURES = (OSError, TimeoutError)

__all__ = ["SCRIPTS", "RedisRecoveryStore"]

log = logging.getLogger("engine.recovery")

SCRIPTS = ("append", "head", "take", "range")
EMPTY = "0-0"  # the mark of an empty history (a session whose head was None)
_BYTES = "__engine_bytes__"


def script_source(name: str) -> str:
    lua = resources.files("engine.recovery") / "lua"
    common = (lua / "_common.lua").read_text(encoding="utf-8")
    return common + "\n" + (lua / f"{name}.lua").read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _tag_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_BYTES: base64.b64encode(bytes(value)).decode()}
    raise TypeError(type(value).__name__)


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(_BYTES), str):
            return base64.b64decode(value[_BYTES])
        return {k: _untag(v) for k, v in value.items()}
    return value


def encode_args(args: Sequence[Any]) -> tuple[bytes, bool]:
    """The arguments as JSON; binary values tagged (base64), flagged so decoding is cheap."""
    binary = False

    def tag(value: Any) -> Any:
        nonlocal binary
        binary = True
        return _tag_bytes(value)

    return orjson.dumps(list(args), default=tag), binary


def _session_json(session: Session) -> bytes:
    identity = session.identity
    return orjson.dumps(
        {
            "namespace": session.namespace,
            "pid": session.pid,
            "sid": session.sid,
            "rooms": sorted(session.rooms),
            "client_rooms": sorted(session.client_rooms),
            "head": session.head,
            "disconnected_at": session.disconnected_at,
            "identity": {
                "user_id": identity.user_id,
                "roles": sorted(identity.roles),
                "claims": dict(identity.claims),
                "via": identity.via,
                "cookie_authenticated": identity.cookie_authenticated,
            },
        },
        default=str,  # claims are JSON already (token entries, JWT payloads, session data)
    )


def _session(raw: Any) -> Session:
    data = orjson.loads(raw)
    identity = data["identity"]
    return Session(
        namespace=data["namespace"],
        pid=data["pid"],
        sid=data["sid"],
        rooms=frozenset(data["rooms"]),
        client_rooms=frozenset(data["client_rooms"]),
        identity=Identity(
            user_id=identity["user_id"],
            roles=frozenset(identity["roles"]),
            claims=identity["claims"],
            via=identity["via"],
            cookie_authenticated=identity["cookie_authenticated"],
        ),
        head=data["head"],
        disconnected_at=data["disconnected_at"],
    )


def _seq(offset: str | None) -> tuple[int, int] | None:
    if offset is None:
        return (0, 0)
    epoch, _, seq = offset.partition("-")
    return (int(epoch), int(seq)) if epoch.isdigit() and seq.isdigit() else None


def _live(stored: Stored, fence: Fence) -> bool:
    """Whether `fence` says the event reached the connection live (see `Fence`)."""
    if not fence.rooms or not stored.reaches(fence.rooms):
        return False
    after, seq = _seq(fence.after), _seq(stored.offset)
    return after is not None and seq is not None and seq > after


def _stored(entry: bytes) -> Stored:
    """One history entry as the scripts return it (`packed` in _common.lua)."""
    raw_id, args, rooms, exclude, binary, size, at, event = entry.split(b"\n", 7)
    decoded = orjson.loads(args)
    if binary == b"1":
        decoded = _untag(decoded)
    return Stored(
        offset=raw_id.decode(),
        event=event.decode(),
        args=tuple(decoded),
        rooms=frozenset(orjson.loads(rooms)) if rooms else None,
        exclude=frozenset(orjson.loads(exclude)) if exclude else frozenset(),
        size=int(size),
        emitted_at=int(at) / 1000,
    )


class RedisRecoveryStore:
    """The `RecoveryStore` on Redis (see the module docstring for the keys).

    :param client: a `redis.asyncio.Redis` (`engine.state.redis.redis_client`).
    :param prefix: prefix of every key, ``engine:<channel>:rec:``.
    """

    def __init__(self, client: Any, *, prefix: str = "engine:socketio:rec:") -> None:
        self.client = client
        self.prefix = prefix
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}
        self._gap: set[str] = set()  # namespaces whose last append failed
        self._usage: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_options(cls, cluster: ClusterOptions) -> RedisRecoveryStore:
        from engine.state.redis import redis_client

        return cls(redis_client(cluster), prefix=f"engine:{cluster.channel}:rec:")

    async def start(self) -> None:
        """Nothing to start (the client connects on first use)."""

    async def aclose(self) -> None:
        await self.client.aclose()

    def _stream(self, namespace: str) -> str:
        return f"{self.prefix}h:{namespace}"

    def _meta(self, namespace: str) -> str:
        return f"{self.prefix}m:{namespace}"

    def _session_key(self, namespace: str, pid: str) -> str:
        return f"{self.prefix}s:{namespace}:{pid}"

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self._scripts[name](keys=list(keys), args=list(args))
        except FAILURES as exc:
            raise RecoveryUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def append(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any],
        rooms: frozenset[str] | None,
        exclude: frozenset[str],
        options: RecoveryOptions,
        now: float,
    ) -> str:
        encoded, binary = encode_args(args)
        rooms_json = orjson.dumps(sorted(rooms)) if rooms is not None else b""
        exclude_json = orjson.dumps(sorted(exclude)) if exclude else b""
        gap = namespace in self._gap
        try:
            offset, length, size = await self._run(
                "append",
                [self._stream(namespace), self._meta(namespace)],
                [
                    event,
                    encoded,
                    rooms_json,
                    exclude_json,
                    "1" if binary else "0",
                    len(encoded) + len(event),
                    options.max_events,
                    options.max_bytes,
                    int(options.max_disconnection_seconds * 1000),
                    "1" if gap else "0",
                ],
            )
        except RecoveryUnavailable:
            self._gap.add(namespace)
            raise
        self._gap.discard(namespace)
        self._usage[namespace] = (int(length), int(size))
        return _text(offset)

    async def head(self, namespace: str) -> str | None:
        found = await self._run("head", [self._meta(namespace)], [])
        return _text(found) if found else None

    async def persist(self, session: Session, options: RecoveryOptions, now: float) -> None:
        ttl_ms = max(1, int(options.max_disconnection_seconds * 1000))
        try:
            await self.client.set(
                self._session_key(session.namespace, session.pid),
                _session_json(session),
                px=ttl_ms,
            )
        except FAILURES as exc:
            raise RecoveryUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def peek(
        self, namespace: str, pid: str, offset: str | None, options: RecoveryOptions, now: float
    ) -> Session | None:
        found = await self._run(
            "take",
            [self._session_key(namespace, pid), self._stream(namespace), self._meta(namespace)],
            [offset or "", "0"],
        )
        return _session(found[0]) if found else None

    async def restore(
        self,
        namespace: str,
        pid: str,
        offset: str | None,
        fence: Fence,
        options: RecoveryOptions,
        now: float,
    ) -> Restored | None:
        found = await self._run(
            "take",
            [self._session_key(namespace, pid), self._stream(namespace), self._meta(namespace)],
            [offset or "", "1"],
        )
        if not found:
            return None
        session = _session(found[0])
        head = _text(found[1])
        missed = tuple(
            stored
            for stored in map(_stored, found[2])
            if stored.reaches(session.rooms) and not _live(stored, fence)
        )
        return Restored(session, missed, None if head == EMPTY else head)

    async def after(
        self, namespace: str, offset: str | None, rooms: frozenset[str]
    ) -> list[Stored] | None:
        found = await self._run(
            "range", [self._stream(namespace), self._meta(namespace)], [offset or EMPTY, ""]
        )
        if not found:
            return None
        return [s for s in map(_stored, found[1]) if s.reaches(rooms)]

    async def discard(self, namespace: str, pid: str) -> None:
        try:
            await self.client.delete(self._session_key(namespace, pid))
        except FAILURES as exc:
            raise RecoveryUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def since(
        self, namespace: str, room: str | None, offset: str | None, limit: int
    ) -> list[Stored] | None:
        count = str(limit) if room is None else ""
        found = await self._run(
            "range", [self._stream(namespace), self._meta(namespace)], [offset or "", count]
        )
        if not found:
            return None
        out: list[Stored] = []
        for stored in map(_stored, found[1]):
            if room is None or stored.rooms is None or room in stored.rooms:
                out.append(stored)
                if len(out) >= limit:
                    break
        return out

    def usage(self, namespace: str) -> tuple[int, int, int]:
        """(events, bytes) as of this node's last append; sessions are not counted (0)."""
        events, size = self._usage.get(namespace, (0, 0))
        return events, size, 0
