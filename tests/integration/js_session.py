"""Drive one official socket.io-client socket (Node, `tests/js/session.mjs`) from a test."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from tests.conftest import ROOT

JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "socket.io-client").is_dir(),
    reason="node or tests/js/node_modules is missing (scripts/test installs them)",
)
Line = dict[str, Any]
WAIT_SECONDS = 15


class JSSession:
    """Commands in, observations out; `seen` keeps every line in order of arrival."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.seen: list[Line] = []
        self._buffer = b""

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(command) + "\n").encode())

    async def _line(self) -> Line:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive()
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\n")
        line: Line = json.loads(raw)
        self.seen.append(line)
        return line

    async def until(self, match: Callable[[Line], bool]) -> Line:
        """Read lines until one matches (they all stay in `seen`)."""
        with anyio.fail_after(WAIT_SECONDS):
            while True:
                line = await self._line()
                if match(line):
                    return line

    async def until_type(self, kind: str) -> Line:
        return await self.until(lambda line: line["type"] == kind)

    async def events(self, name: str, count: int) -> list[Line]:
        """Read until `count` `name` events have been seen since the last call."""
        start = len(self.seen)
        with anyio.fail_after(WAIT_SECONDS):
            while sum(1 for line in self.seen[start:] if line.get("event") == name) < count:
                await self._line()
        return [line for line in self.seen[start:] if line.get("event") == name]


@asynccontextmanager
async def js_session(url: str, namespace: str = "/", **options: Any) -> AsyncIterator[JSSession]:
    assert NODE is not None
    scenario = {"url": url, "namespace": namespace, "options": options}
    async with await anyio.open_process(
        [NODE, str(JS / "session.mjs"), json.dumps(scenario)], cwd=JS
    ) as process:
        session = JSSession(process)
        try:
            yield session
        finally:
            if process.returncode is None:
                process.kill()
