"""The engine's own WebSocket layer (engine.transport.direct), byte by byte over raw TCP.

RFC 6455 as a server must speak it, what is handed to hypercorn instead, and what a session
costs: one task per idle connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
import socketio

from engine.serve import Running
from engine.transport.rfc6455 import unmask
from tests.conftest import serving
from tests.integration.test_hostile import wait_until

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "direct"
environment = "development"

[server]
max_payload_bytes = 4096
shutdown_grace_seconds = 1

[security.abuse]
strikes = 1000

[namespaces."/"]
handler = "tests.integration.test_protocol:Echo"

[namespaces."/flood"]
handler = "tests.integration.test_direct_websocket:Flood"
"""

CHUNK = "x" * 8192


class Flood(socketio.AsyncNamespace):  # type: ignore[misc]
    """Sends its caller more than a socket buffer holds, in numbered chunks."""

    async def on_flood(self, sid: str, count: int) -> int:
        for index in range(count):
            await self.emit("chunk", {"i": index, "pad": CHUNK}, to=sid)
        return count


@pytest.fixture
async def running(write_profile: Callable[..., Path]) -> AsyncIterator[Running]:
    async with serving(write_profile(PROFILE)) as server:
        yield server


class Peer:
    """A WebSocket client written by hand: any frame, any byte, any split."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def head(self) -> tuple[int, dict[str, str]]:
        with anyio.fail_after(5):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(lines[0].split(" ")[1]), headers

    def send(self, opcode: int, payload: bytes, *, final: bool = True, mask: bool = True) -> None:
        n = len(payload)
        first = (0x80 if final else 0) | opcode
        bit = 0x80 if mask else 0
        if n < 126:
            header = bytes((first, bit | n))
        elif n < 65536:
            header = bytes((first, bit | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, bit | 127)) + n.to_bytes(8, "big")
        if mask:
            key = os.urandom(4)
            self.writer.write(header + key + unmask(payload, key))
        else:
            self.writer.write(header + payload)

    def text(self, message: str) -> None:
        self.send(0x1, message.encode())

    async def frame(self) -> tuple[int, bytes]:
        with anyio.fail_after(5):
            first, second = await self.reader.readexactly(2)
            n = second & 0x7F
            assert not second & 0x80, "server frames are never masked"
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(n)

    async def message(self) -> str:
        """The next text message, skipping the server's pings."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x1 and payload != b"2":
                return payload.decode()
            assert opcode in (0x1, 0xA), opcode

    async def closed_with(self) -> int:
        """The close code the server sends, then its end of the TCP connection."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                with anyio.fail_after(5):
                    assert await self.reader.read() == b""
                return int.from_bytes(payload[:2], "big")

    async def eof(self) -> bool:
        with anyio.fail_after(5):
            try:
                return await self.reader.read() == b""
            except ConnectionResetError:
                return True


def handshake(path: str = "/socket.io/?EIO=4&transport=websocket", **extra: str) -> bytes:
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        **extra,
    }
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextlib.asynccontextmanager
async def peer(running: Running, *, connect: bool = True) -> AsyncIterator[Peer]:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    p = Peer(reader, writer)
    try:
        writer.write(handshake())
        status, _ = await p.head()
        assert status == 101
        assert (await p.message()).startswith("0{")
        if connect:
            p.text("40")
            assert (await p.message()).startswith('40{"sid"')
        yield p
    finally:
        writer.transport.abort()


async def test_a_handshake_split_byte_by_byte_is_accepted(running: Running) -> None:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    p = Peer(reader, writer)
    for byte in handshake(**{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}):
        writer.write(bytes((byte,)))
        await writer.drain()
    status, headers = await p.head()
    assert status == 101
    assert "date" not in headers  # the engine's 101 (hypercorn's carries a date header)
    # RFC 6455 4.2.2: base64(SHA-1(key + GUID))
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert (await p.message()).startswith("0{")
    writer.transport.abort()


async def test_fragmented_messages_pings_and_binary_are_understood(running: Running) -> None:
    async with peer(running) as p:
        p.send(0x1, b'421["ec', final=False)
        p.send(0x9, b"are you there")  # a ping between the fragments of a message
        p.send(0x0, b'ho",{"n":', final=False)
        p.send(0x0, '1,"s":"é"}]'.encode())
        assert await p.frame() == (0xA, b"are you there")
        assert json.loads((await p.message())[3:]) == [{"n": 1, "s": "é"}]


async def test_protocol_violations_close_with_the_rfc_code(running: Running) -> None:
    async with peer(running) as p:
        p.send(0x1, b'42["echo"]', mask=False)
        assert await p.closed_with() == 1002
    async with peer(running) as p:
        p.send(0x1, b"\xff\xfe")
        assert await p.closed_with() == 1007
    async with peer(running) as p:
        p.send(0x0, b"continuation of nothing")
        assert await p.closed_with() == 1002
    async with peer(running) as p:
        p.writer.write(bytes((0xC1, 0x80)) + os.urandom(4))  # RSV1 set
        assert await p.closed_with() == 1002
    async with peer(running) as p:
        p.send(0x9, b"x" * 126)  # control frames carry at most 125 bytes
        assert await p.closed_with() == 1002


async def test_a_close_is_answered_and_ends_the_connection(running: Running) -> None:
    async with peer(running) as p:
        p.send(0x8, (1000).to_bytes(2, "big"))
        assert await p.closed_with() == 1000


async def test_an_oversize_frame_aborts_on_its_header_alone(running: Running) -> None:
    async with peer(running) as bystander, peer(running) as p:
        # a header announcing 1 TiB, and not a byte of it: the server does not wait for it
        p.writer.write(bytes((0x81, 0x80 | 127)) + (1 << 40).to_bytes(8, "big") + os.urandom(4))
        assert await p.eof()
        bystander.text('421["echo","still here"]')
        assert await bystander.message() == '431["still here"]'


async def test_unusual_handshakes_are_left_to_hypercorn(running: Running) -> None:
    """Whatever the engine does not serve itself gets hypercorn's answer, unchanged."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(handshake(**{"Sec-WebSocket-Version": "8"}))
    status, _ = await Peer(reader, writer).head()
    assert status != 101
    writer.transport.abort()
    # a polling handshake on the same port is hypercorn's as well
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _ = await Peer(reader, writer).head()
    assert status == 200
    writer.transport.abort()


async def test_one_task_per_idle_connection(running: Running) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(peer(running))  # the server's first-session tasks
        before = asyncio.all_tasks()
        peers = [await stack.enter_async_context(peer(running)) for _ in range(20)]
        added = asyncio.all_tasks() - before
        assert len(added) == 20, sorted(str(t.get_coro()) for t in added)
        for index, p in enumerate(peers):  # and every one of them is served
            p.text(f'42{index}["echo",{index}]')
            assert await p.message() == f"43{index}[{index}]"


async def test_a_peer_that_stops_reading_delays_only_itself(running: Running) -> None:
    """Writes go straight to the socket until its buffer is full; then the session queues and
    one writer task waits for the peer. Nobody else waits, nothing is lost or reordered."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: backlog soon
    sock.connect((running.host, running.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    slow = Peer(reader, writer)
    try:
        writer.write(handshake())
        assert (await slow.head())[0] == 101
        assert (await slow.message()).startswith("0{")
        slow.text("40/flood,")
        assert (await slow.message()).startswith('40/flood,{"sid"')
        count = 2000  # 2000 x 8 KiB: far more than the kernel's socket buffers hold
        slow.text(f'42/flood,1["flood",{count}]')
        sessions = running.engine.sio.eio.sockets

        def lagging() -> bool:  # the slow peer's session waits in a writer task of its own
            return sum(session._writing is not None for session in sessions.values()) == 1

        await wait_until(lagging)
        async with peer(running) as bystander:
            with anyio.fail_after(5):
                for index in range(20):  # the slow peer reads nothing meanwhile
                    bystander.text(f'42{index}["echo",{index}]')
                    assert await bystander.message() == f"43{index}[{index}]"
        assert lagging()
        received = []
        with anyio.fail_after(20):
            while len(received) < count:
                message = await slow.message()
                if message.startswith('42/flood,["chunk"'):
                    received.append(json.loads(message[len("42/flood,") :])[1]["i"])
        assert received == list(range(count))
    finally:
        writer.transport.abort()


async def test_every_new_session_passes_the_connect_rate(
    write_profile: Callable[..., Path],
) -> None:
    """Only a real `sid` parameter makes a request an upgrade of an existing session."""
    limited = PROFILE.replace(
        "[security.abuse]",
        "[security.rate_limits]\nconnects_per_ip = { rate_per_second = 0.001, burst = 1 }\n\n"
        "[security.abuse]",
    )
    async with serving(write_profile(limited)) as running:
        async with peer(running):
            pass
        reader, writer = await asyncio.open_connection(running.host, running.port)
        writer.write(handshake("/socket.io/?EIO=4&transport=websocket&xsid=1"))
        status, headers = await Peer(reader, writer).head()
        writer.transport.abort()
        assert status == 429
        assert "retry-after" in headers
        assert "date" in headers  # an origin server's answer carries its date (RFC 9110)


async def test_with_compression_on_a_deflate_offer_goes_to_hypercorn(
    write_profile: Callable[..., Path],
) -> None:
    """`websocket_compression = true`: the engine's layer speaks no permessage-deflate, so a
    handshake that offers it is hypercorn's (which negotiates it); one that does not is the
    engine's."""
    compressed = PROFILE.replace("[server]", "[server]\nwebsocket_compression = true")
    async with serving(write_profile(compressed)) as running:
        offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        for extra, served_by_engine in (({}, True), (offer, False)):
            reader, writer = await asyncio.open_connection(running.host, running.port)
            writer.write(handshake(**extra))
            status, headers = await Peer(reader, writer).head()
            writer.transport.abort()
            assert status == 101
            assert ("date" not in headers) is served_by_engine, headers
            deflate = "permessage-deflate" in headers.get("sec-websocket-extensions", "")
            assert deflate is not served_by_engine, headers
