"""Namespace handlers used by the integration tests, written as any python-socketio user would."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

import engine.namespaces


class EchoNamespace(socketio.AsyncNamespace):
    """A plain python-socketio namespace class, plugged in unchanged."""

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await self.emit("welcome", {"sid": sid}, to=sid)

    async def on_echo(self, sid: str, data: Any) -> Any:
        return data

    async def on_shout(self, sid: str, data: Any) -> None:
        await self.emit("shouted", data, room="everyone")


class LegacyConnect(socketio.AsyncNamespace):
    """Old-style connect handler without the auth argument, and one that refuses."""

    async def on_connect(self, sid: str, environ: dict[str, Any]) -> bool:
        return environ.get("HTTP_X_LET_ME_IN") == "yes"

    async def on_ping_me(self, sid: str) -> str:
        return "pong"


class RoomsNamespace(engine.namespaces.Namespace):
    """The engine's thin base class."""

    async def on_my_rooms(self, sid: str) -> list[str]:
        return sorted(self.rooms_of(sid))


class NotANamespace:
    pass


class WatchedNamespace(socketio.AsyncNamespace):
    """Lets a test wait until the server has seen a connection end (no sleeps)."""

    gone: dict[str, asyncio.Event] = {}

    @classmethod
    def ended(cls, sid: str) -> asyncio.Event:
        return cls.gone.setdefault(sid, asyncio.Event())

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.ended(sid).set()

    async def on_echo(self, sid: str, data: Any) -> Any:
        return data


class OrderNamespace(socketio.AsyncNamespace):
    """Records the order in which events start and finish; `hold` waits for `GATE`."""

    GATE: Any = None  # an asyncio.Event the test sets
    RECORD: list[tuple[str, str]] = []

    async def on_hold(self, sid: str, data: Any = None) -> Any:
        self.RECORD.append((sid, "hold:start"))
        await self.GATE.wait()
        self.RECORD.append((sid, "hold:end"))
        return "held"

    async def on_echo(self, sid: str, data: Any) -> Any:
        self.RECORD.append((sid, "echo"))
        return data
