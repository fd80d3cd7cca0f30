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
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jsonschema

from engine.monitoring.sinks.prometheus import bearer_ok
from engine.progress import TooManyTasks
from engine.refusal import Refusal
from engine.transport.http import Request, Response

if TYPE_CHECKING:
    from engine.app import Engine

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
    """The publish API refused a request: `status`, `code` and `message` say why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Publisher:
    """Publish to a running engine from any process (workers, cron jobs): blocking, stdlib only.

    Through the HTTP publish API today; a profile with a Redis broker will be published to
    through the broker with the same methods.

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
