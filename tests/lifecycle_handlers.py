"""Namespace handlers of the lifecycle tests (reload, maintenance, drain, errors)."""

from __future__ import annotations

from typing import Any

import socketio


class LifecycleNamespace(socketio.AsyncNamespace):
    """Acks for every event the lifecycle tests send; `fail` raises."""

    async def on_echo(self, sid: str, data: Any = None) -> Any:
        return data

    async def on_added(self, sid: str, data: Any = None) -> Any:
        return {"added": data}

    async def on_limited(self, sid: str, data: Any = None) -> Any:
        return {"limited": data}

    async def on_fail(self, sid: str, data: Any = None) -> Any:
        raise RuntimeError(f"handler failed on purpose: {data}")
