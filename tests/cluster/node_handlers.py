"""The namespace of the multi-node tests: each node says who it is."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import socketio


class NodeNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    async def on_whoami(self, sid: str, data: Any = None) -> str:
        return os.environ.get("NODE_ID", "?")

    async def on_shout(self, sid: str, data: Any) -> None:
        await self.emit("shouted", data, room="everyone")

    async def on_hold(self, sid: str, seconds: float) -> str:
        """An in-flight handler that keeps a draining node alive for `seconds`."""
        await self.emit("holding", to=sid)
        await asyncio.sleep(float(seconds))
        return "held"
