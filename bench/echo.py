"""Echo handler used by the engine benchmark profile (bench/profiles/production-bench.toml).

A plain python-socketio namespace, so the engine's cost is measured around the same handler code
that bench/bare_server.py runs:

- ``echo``: acknowledges its payload unchanged (``return data``);
- ``fanout``: emits ``tick`` with the caller's payload to the room ``all`` (the profile auto-joins
  every client to it), then acknowledges ``True``.
"""

from __future__ import annotations

from typing import Any

import socketio

FANOUT_ROOM = "all"


class EchoNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    async def on_echo(self, sid: str, data: Any) -> Any:
        return data

    async def on_fanout(self, sid: str, data: Any) -> bool:
        await self.emit("tick", data, room=FANOUT_ROOM)
        return True
