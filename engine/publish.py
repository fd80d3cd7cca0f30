"""Publish from anywhere: the publish API (server side) and `Publisher` (any process).

`POST /engine/api/publish` (bearer `[publish] token`) takes one JSON object, validated against
`BODY_SCHEMA`:

- an event: `{"event": "name", "args": [...], "namespace": "/", "room"|"user"|"role": ...}`
  (no target: the whole namespace); the answer carries the event's `offset` when the
  namespace keeps a recovery history, and how many connections it reached;
- a progress operation: `{"progress": {"task_id", "owner", "percent", "message", "data",
  "status", "result", "error"}}`, or `{"progress": {"task_id", "cancel": true}}`; the answer
  carries the task's state, including `cancel_requested` (how a remote worker learns it);
- `idempotency_key`: a repeated key within `[publish] idempotency_seconds` gets the first
  answer again, and nothing is emitted twice.

`GET /engine/api/history?namespace=/&room=...&since=<offset>&limit=...` returns the recoverable
events after `since` (410 when `since` is no longer kept: resynchronise from scratch).

Clients for any process: `connect(profile)` gives a `BrokerPublisher` (through the Redis broker,
recovery offsets included; `AsyncBrokerPublisher` inside an event loop) with ``[cluster] adapter
= "redis"``, else a `Publisher` (the HTTP API).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jsonschema

from engine.cluster.options import ClusterOptions
from engine.monitoring.sinks.prometheus import bearer_ok
from engine.profile.model import Profile
from engine.progress import TooManyTasks
from engine.refusal import Refusal
from engine.transport.http import Request, Response

if TYPE_CHECKING:
    from engine.app import Engine

_log = logging.getLogger("engine.publish")
_T = TypeVar("_T")

PUBLISH_PATH = "/engine/api/publish"
HISTORY_PATH = "/engine/api/history"

_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
BODY_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "namespace": {"type": "string", "pattern": "^/", "maxLength": 200},
        "event": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "args": {"type": "array", "maxItems": 32},
        "room": _NAME,
        "user": _NAME,
        "role": _NAME,
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
        "progress": {
            "type": "object",
            "additionalProperties": False,
            "required": ["task_id"],
            "properties": {
                "task_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
                "owner": _NAME,
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
                "message": {"type": "string", "maxLength": 2000},
                "data": {},
                "status": {"enum": ["running", "completed", "failed", "cancelled"]},
                "result": {},
                "error": {},
                "cancel": {"const": True},
            },
        },
    },
    "oneOf": [
        {"required": ["event"], "not": {"required": ["progress"]}},
        {"required": ["progress"], "not": {"required": ["event"]}},
    ],
    "dependencies": {
        "room": {"not": {"anyOf": [{"required": ["user"]}, {"required": ["role"]}]}},
        "user": {"not": {"required": ["role"]}},
    },
}
_VALIDATOR = jsonschema.Draft7Validator(BODY_SCHEMA)


def body_problem(body: Any) -> str | None:
    """The first schema problem of a publish body, as `path: message`, or None."""
    errors = sorted(_VALIDATOR.iter_errors(body), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    error = errors[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if error.validator == "oneOf":
        return "exactly one of `event` or `progress` is required"
    if "dependencies" in error.schema_path:
        return "at most one of `room`, `user`, `role`"
    return f"body{where}: {error.message}"


class Idempotency:
    """Answers by key, each kept for `seconds` (insertion order = expiry order)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.clock = clock
        self.max_keys = max_keys
        self._answers: OrderedDict[str, tuple[float, int, dict[str, Any]]] = OrderedDict()

    def get(self, key: str) -> tuple[int, dict[str, Any]] | None:
        now = self.clock()
        while self._answers:
            oldest, (expires, _, _) = next(iter(self._answers.items()))
            if expires > now and len(self._answers) <= self.max_keys:
                break
            del self._answers[oldest]
        found = self._answers.get(key)
        return (found[1], found[2]) if found is not None else None

    def put(self, key: str, seconds: float, status: int, body: dict[str, Any]) -> None:
        self._answers[key] = (self.clock() + seconds, status, body)


class PublishAPI:
    """The publish and history routes of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.idempotency = Idempotency()

    def _refused(self, request: Request) -> Response | None:
        token = self.engine.runtime.profile.publish.token
        if token is None:
            return Response.error(404, "not_found", "the publish API is off (no [publish] token)")
        if not bearer_ok(request.headers, token):
            return Response.error(
                401, "unauthorized", "bearer token required", (("www-authenticate", "Bearer"),)
            )
        return None

    async def publish(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body)
        except ValueError:
            return Response.error(400, "invalid_payload", "the body must be JSON")
        problem = body_problem(body)
        if problem is not None:
            return Response.error(422, "invalid_payload", problem)
        key = body.get("idempotency_key")
        if key is not None:
            seen = self.idempotency.get(key)
            if seen is not None:
                return Response.json(seen[0], {**seen[1], "duplicate": True})
        status, answer = await self._apply(body)
        if key is not None and status < 300:
            seconds = self.engine.runtime.profile.publish.idempotency_seconds
            self.idempotency.put(key, seconds, status, answer)
        return Response.json(status, answer)

    async def _apply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if "progress" in body:
            return self._progress(body["progress"])
        sio = self.engine.sio
        namespace = body.get("namespace", "/")
        if namespace not in self.engine.runtime.namespaces:
            return 404, _error("invalid_namespace", f"namespace {namespace!r} is not served")
        to: Any = body.get("room")
        if "user" in body or "role" in body:
            to = sorted(
                member.sid
                for (ns, _), member in sio.guard.members.items()
                if ns == namespace
                and (
                    member.identity.user_id == body["user"]
                    if "user" in body
                    else body["role"] in member.identity.roles
                )
            )
            if not to:
                return 200, {"ok": True, "offset": None, "recipients": 0}
        args = tuple(body.get("args", ()))
        recipients = _count(sio, namespace, to)
        offset = await sio.emit_recorded(body["event"], args, to=to, namespace=namespace)
        return 200, {"ok": True, "offset": offset, "recipients": recipients}

    def _progress(self, op: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        hub = self.engine.progress
        task_id = op["task_id"]
        try:
            if op.get("cancel"):
                if hub.get(task_id) is None:
                    return 404, _error("not_found", f"task {task_id!r} is unknown")
                state = hub.request_cancel(task_id, None)
            else:
                fields = {k: op[k] for k in ("owner", "percent", "message", "data") if k in op}
                hub.publish(
                    task_id,
                    status=op.get("status", "running"),
                    result=op.get("result"),
                    error=op.get("error"),
                    **fields,
                )
                found = hub.get(task_id)
                assert found is not None
                state = found
        except Refusal as refusal:
            return 409, _error("conflict", refusal.message)
        except TooManyTasks as exc:
            return 429, _error("too_many_tasks", str(exc))
        except ValueError as exc:
            return 409, _error("conflict", str(exc))
        return 200, {"ok": True, "task": state.public(hub.wall_clock())}

    async def history(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        query = urllib.parse.parse_qs(request.query, max_num_fields=8)
        namespace = (query.get("namespace") or ["/"])[0]
        room = query["room"][0] if "room" in query else None
        since = query["since"][0] if "since" in query else None
        limit_text = (query.get("limit") or [""])[0]
        cap = self.engine.runtime.profile.publish.max_history_events
        if limit_text and not limit_text.isdigit():
            return Response.error(400, "invalid_payload", "limit must be a positive integer")
        limit = min(int(limit_text), cap) if limit_text else cap
        if not self.engine.sio.recovery.enabled(namespace):
            return Response.error(
                404, "not_found", f"namespace {namespace!r} keeps no history (no recovery)"
            )
        found = await self.engine.sio.recovery.store.since(namespace, room, since, limit)
        if found is None:
            return Response.error(
                410, "gone", "`since` is no longer kept: the history moved past it"
            )
        events = [{"offset": e.offset, "event": e.event, "args": list(e.args)} for e in found]
        return Response.json(
            200,
            {
                "events": events,
                "last_offset": events[-1]["offset"] if events else since,
                "more": len(events) >= limit,
            },
        )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _count(sio: Any, namespace: str, to: Any) -> int:
    return sum(1 for _ in sio.manager.get_participants(namespace, to)) if to != [] else 0


# -- the client ----------------------------------------------------------------------------


class PublishError(Exception):
    """A publish was refused or failed: `status`, `code` and `message` say why (the HTTP
    API's status and error code; the broker path uses the same codes, plus 501
    `not_supported` (`Unsupported`) and 503 `unavailable` when Redis does not answer)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Publisher:
    """Publish to a running engine from any process (workers, cron jobs): blocking, stdlib only.

    Through the HTTP publish API. `connect(profile)` picks the path from the profile: this
    class without a broker, `BrokerPublisher` (same methods) with ``[cluster] adapter =
    "redis"``.

    Example usage::

        publisher = Publisher("http://127.0.0.1:8000", token=os.environ["ENGINE_PUBLISH_TOKEN"])
        publisher.emit("notice", {"text": "deploy at 5"}, role="admin")
        task = publisher.progress("export-42", owner="alice", percent=10, message="reading")
        if task["cancel_requested"]: ...
        publisher.complete("export-42", result={"url": "/files/export-42.csv"})

    :param url: the engine's base URL.
    :param token: the profile's `[publish] token`.
    """

    def __init__(self, url: str, token: str, *, timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_seconds = timeout_seconds

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"authorization": f"Bearer {self.token}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", exc.reason
            raise PublishError(exc.code, code, message) from None

    def emit(
        self,
        event: str,
        *args: Any,
        namespace: str = "/",
        room: str | None = None,
        user: str | None = None,
        role: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Emit `event` with `args`; `{"ok", "offset", "recipients"}`."""
        body: dict[str, Any] = {"event": event, "args": list(args), "namespace": namespace}
        for key, value in (
            ("room", room),
            ("user", user),
            ("role", role),
            ("idempotency_key", idempotency_key),
        ):
            if value is not None:
                body[key] = value
        answer: dict[str, Any] = self._call("POST", PUBLISH_PATH, body)
        return answer

    def progress(self, task_id: str, **fields: Any) -> dict[str, Any]:
        """Create or update a task (`owner`, `percent`, `message`, `data`, `status`, `result`,
        `error`); the task's state, with `cancel_requested`."""
        answer = self._call("POST", PUBLISH_PATH, {"progress": {"task_id": task_id, **fields}})
        task: dict[str, Any] = answer["task"]
        return task

    def complete(self, task_id: str, result: Any = None) -> dict[str, Any]:
        return self.progress(task_id, status="completed", result=result)

    def fail(self, task_id: str, error: Any = None) -> dict[str, Any]:
        return self.progress(task_id, status="failed", error=error)

    def history(
        self, *, namespace: str = "/", room: str | None = None, since: str | None = None
    ) -> dict[str, Any]:
        query = {"namespace": namespace, **({"room": room} if room else {})}
        if since is not None:
            query["since"] = since
        answer: dict[str, Any] = self._call(
            "GET", HISTORY_PATH + "?" + urllib.parse.urlencode(query)
        )
        return answer


# -- through the broker ---------------------------------------------------------------------


class Unsupported(PublishError):
    """What the broker path cannot do without a node's state (`user`/`role` targets, progress
    operations without an HTTP fallback, idempotency keys)."""

    def __init__(self, message: str) -> None:
        super().__init__(501, "not_supported", message)


class AsyncBrokerPublisher:
    """Publish to a cluster through its Redis broker, from a process that is not a node.

    python-socketio's write-only `AsyncRedisManager` on the profile's ``[cluster] channel``
    (same URL, password and ``redis_options`` as the nodes' broker, and its publishing client),
    so every node delivers the event to its own members. For a namespace with
    ``[namespaces."<ns>".recovery]`` the event is first appended to the Redis history, and its
    offset travels as the last argument, as a node's `emit_recorded` does: clients recover it
    like any other event. Redis clients connect on first use; `aclose()` (or ``async with``)
    closes them.

    Targets: the whole namespace, or `room` (a sid is a room). `user` and `role` need the
    nodes' connection state and are refused (`Unsupported`), as are idempotency keys; progress
    operations go through `http` (a `Publisher`) when given, else are refused.

    :param profile: the engine's profile (``[cluster] adapter = "redis"``).
    :param http: the HTTP client for progress operations, optional.
    """

    def __init__(self, profile: Profile, *, http: Publisher | None = None) -> None:
        if profile.cluster.adapter != "redis" or profile.cluster.url is None:
            raise ValueError('a broker publisher needs [cluster] adapter = "redis"')
        self.profile = profile
        self.http = http
        self._manager: Any = None
        self._store: Any = None

    async def __aenter__(self) -> AsyncBrokerPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _manager_for(self) -> Any:
        if self._manager is None:
            self._manager = _write_only_manager(self.profile.cluster)
        return self._manager

    def _store_for(self) -> Any:
        if self._store is None:
            from engine.recovery.redis import RedisRecoveryStore

            self._store = RedisRecoveryStore.from_options(self.profile.cluster)
        return self._store

    async def aclose(self) -> None:
        manager, store, self._manager, self._store = self._manager, self._store, None, None
        if manager is not None:
            await manager.aclose()
        if store is not None:
            await store.aclose()

    def _namespace(self, namespace: str) -> Any:
        spec = self.profile.namespaces.get(namespace)
        if spec is None:
            raise PublishError(404, "invalid_namespace", f"namespace {namespace!r} is not served")
        return spec

    async def emit(
        self,
        event: str,
        *args: Any,
        namespace: str = "/",
        room: str | None = None,
        user: str | None = None,
        role: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Emit `event` with `args` to `room` (or the whole namespace); `{"ok", "offset",
        "recipients": None, "nodes"}`: `nodes` is how many processes subscribe to the channel
        (connections are counted by the nodes, not here)."""
        if user is not None or role is not None:
            raise Unsupported(
                "`user` and `role` targets need the nodes' connections: use the HTTP API "
                "(Publisher), or a room every such connection joins (e.g. auto_join)"
            )
        if idempotency_key is not None:
            raise Unsupported("idempotency keys are kept by the HTTP API only")
        body: dict[str, Any] = {"event": event, "args": list(args), "namespace": namespace}
        if room is not None:
            body["room"] = room
        problem = body_problem(body)
        if problem is not None:
            raise PublishError(422, "invalid_payload", problem)
        spec = self._namespace(namespace)
        from engine.recovery import RecoveryUnavailable
        from engine.recovery.adapter import targets

        offset: str | None = None
        if spec.recovery is not None:
            try:
                offset = await self._store_for().append(
                    namespace, event, args, targets(room), frozenset(), spec.recovery, 0.0
                )
            except RecoveryUnavailable as exc:
                # as a node does: sent live without an offset, the gap is marked by the next
                # append; a Redis that cannot append will not publish either (raised below)
                _log.warning("recovery store: %s not kept (%s)", event, exc)
        data = (*args, offset) if offset is not None else tuple(args)
        manager = self._manager_for()
        try:
            await manager.emit(event, data, namespace=namespace, room=room)
        except Exception as exc:
            raise PublishError(503, "unavailable", f"cannot publish to Redis ({exc})") from exc
        return {"ok": True, "offset": offset, "recipients": None, "nodes": manager.subscribers}

    async def history(
        self, *, namespace: str = "/", room: str | None = None, since: str | None = None
    ) -> dict[str, Any]:
        """`GET /engine/api/history`'s answer, read from the Redis history directly."""
        spec = self._namespace(namespace)
        if spec.recovery is None:
            raise PublishError(
                404, "not_found", f"namespace {namespace!r} keeps no history (no recovery)"
            )
        from engine.recovery import RecoveryUnavailable

        limit = self.profile.publish.max_history_events
        try:
            found = await self._store_for().since(namespace, room, since, limit)
        except RecoveryUnavailable as exc:
            raise PublishError(503, "unavailable", str(exc)) from exc
        if found is None:
            raise PublishError(410, "gone", "`since` is no longer kept: the history moved past it")
        events = [{"offset": e.offset, "event": e.event, "args": list(e.args)} for e in found]
        return {
            "events": events,
            "last_offset": events[-1]["offset"] if events else since,
            "more": len(events) >= limit,
        }

    def _http(self) -> Publisher:
        if self.http is None:
            raise Unsupported(
                "progress operations need the task state a node keeps: give the publisher the "
                "HTTP API (connect(profile, url=...) with a [publish] token)"
            )
        return self.http

    async def progress(self, task_id: str, **fields: Any) -> dict[str, Any]:
        http = self._http()
        return await asyncio.to_thread(http.progress, task_id, **fields)

    async def complete(self, task_id: str, result: Any = None) -> dict[str, Any]:
        return await self.progress(task_id, status="completed", result=result)

    async def fail(self, task_id: str, error: Any = None) -> dict[str, Any]:
        return await self.progress(task_id, status="failed", error=error)


class BrokerPublisher:
    """`AsyncBrokerPublisher` for synchronous code (a cron job, a worker): each call runs in
    its own `asyncio.run` with fresh Redis connections, closed before it returns. Not for a
    thread that already runs an event loop (use `AsyncBrokerPublisher` there). Same methods
    and refusals as `AsyncBrokerPublisher`, same shape as `Publisher`."""

    def __init__(self, profile: Profile, *, http: Publisher | None = None) -> None:
        AsyncBrokerPublisher(profile)  # checks the profile now, not at the first call
        self.profile = profile
        self.http = http

    def _run(self, call: Callable[[AsyncBrokerPublisher], Awaitable[_T]]) -> _T:
        async def once() -> _T:
            async with AsyncBrokerPublisher(self.profile, http=self.http) as publisher:
                return await call(publisher)

        return asyncio.run(once())

    def emit(
        self,
        event: str,
        *args: Any,
        namespace: str = "/",
        room: str | None = None,
        user: str | None = None,
        role: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        return self._run(
            lambda p: p.emit(
                event,
                *args,
                namespace=namespace,
                room=room,
                user=user,
                role=role,
                idempotency_key=idempotency_key,
            )
        )

    def history(
        self, *, namespace: str = "/", room: str | None = None, since: str | None = None
    ) -> dict[str, Any]:
        return self._run(lambda p: p.history(namespace=namespace, room=room, since=since))

    def progress(self, task_id: str, **fields: Any) -> dict[str, Any]:
        if self.http is None:
            AsyncBrokerPublisher(self.profile)._http()  # raises Unsupported
        assert self.http is not None
        return self.http.progress(task_id, **fields)

    def complete(self, task_id: str, result: Any = None) -> dict[str, Any]:
        return self.progress(task_id, status="completed", result=result)

    def fail(self, task_id: str, error: Any = None) -> dict[str, Any]:
        return self.progress(task_id, status="failed", error=error)


def _write_only_manager(cluster: ClusterOptions) -> Any:
    """python-socketio's write-only `AsyncRedisManager` on the cluster's channel, publishing
    with the broker's client (bounded timeouts, Sentinel-aware); a failed publish raises
    instead of being logged and dropped, and `subscribers` is PUBLISH's answer."""
    import socketio

    from engine.cluster.broker import publisher_options, redis_client

    class WriteOnly(socketio.AsyncRedisManager):  # type: ignore[misc]
        subscribers: int | None = None

        async def _publish(self, data: Any) -> None:
            self.subscribers = int(await self.client.publish(self.channel, self.json.dumps(data)))

        async def aclose(self) -> None:
            await self.client.aclose()

    assert cluster.url is not None
    manager = WriteOnly(
        url=cluster.url,
        channel=cluster.channel,
        write_only=True,
        redis_options=cluster.connection_options(),
        logger=_log,
    )
    manager.client = redis_client(
        cluster.url, cluster.channel, publisher_options(manager.redis_options)
    )
    return manager


def connect(
    profile: Profile | str | os.PathLike[str],
    *,
    url: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout_seconds: float = 10.0,
) -> Publisher | BrokerPublisher:
    """The publisher for `profile` (a path, loaded with `environ` or the process's
    environment, or a loaded `Profile`): a `BrokerPublisher` with ``[cluster] adapter =
    "redis"`` (progress operations through `url` when given), else a `Publisher` on `url`
    (default: the profile's ``[server]`` address, loopback for a wildcard host).

    :param token: the publish token; default ``[publish] token``.
    """
    if isinstance(profile, Profile):
        loaded = profile
    else:
        from engine.profile.build import load_profile

        loaded = load_profile(Path(profile), environ)
    token = token if token is not None else loaded.publish.token
    if loaded.cluster.adapter == "redis":
        http = Publisher(url, token, timeout_seconds=timeout_seconds) if url and token else None
        return BrokerPublisher(loaded, http=http)
    if token is None:
        raise ValueError("the profile has no [publish] token: its publish API is off")
    return Publisher(url or _server_url(loaded), token, timeout_seconds=timeout_seconds)


def _server_url(profile: Profile) -> str:
    server = profile.server
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(server.host, server.host)
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if server.tls_cert_file is not None else "http"
    return f"{scheme}://{host}:{server.port}"
