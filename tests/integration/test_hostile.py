"""Hostile clients (issue 3, protocol hardening) against a real engine on 127.0.0.1:0.

Every test runs a well-behaved Socket.IO client beside the attack whose acks must keep
arriving, then checks that the server's session tables are back to their baseline and that the
process RSS (the server runs in this process) did not grow by more than a generous bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
import socketio

from engine.serve import Running
from engine.state import MemoryStateStore
from tests.conftest import serving

pytestmark = pytest.mark.anyio

BASE = """
[engine]
name = "hostile"
environment = "development"

[server]
shutdown_grace_seconds = 1
connect_timeout_seconds = 0.5
{server}

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"

[namespaces."/legacy"]
handler = "tests.handlers:LegacyConnect"

{extra}
"""

RSS_BOUND = 64 * 1024 * 1024
WS_PATH = "/socket.io/?EIO=4&transport=websocket"
POLL_PATH = "/socket.io/?EIO=4&transport=polling"
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
BINARY_HEADER = '451-["echo",{"_placeholder":true,"num":0}]'


def profile(server: str = "", extra: str = "") -> str:
    return BASE.format(server=server, extra=extra)


def rss() -> int:
    """Resident set size of this process (the server runs in it), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def tables(running: Running) -> dict[str, int]:
    """Sizes of every per-session table the server keeps."""
    sio = running.engine.sio
    guard = sio.guard
    return {
        "eio.sockets": len(sio.eio.sockets),
        "sio.environ": len(sio.environ),
        "sio._binary_packet": len(sio._binary_packet),
        "sio._deadlines": len(sio._deadlines),
        "guard.peers": len(guard.peers),
        "guard.members": len(guard.members),
        "client_rooms": sum(len(ns.client_rooms) for ns in sio.engine_namespaces.values()),
        "manager.rooms": sum(len(rooms) for rooms in sio.manager.rooms.values()),
    }


def limiter_sizes(running: Running) -> dict[str, int]:
    """Live token buckets per rate-limit policy in the engine's state store."""
    store = running.engine.sio.guard.store
    assert isinstance(store, MemoryStateStore)
    sizes: dict[str, int] = {}
    for key in store.bucket_keys():
        policy = key.split(":")[1]
        sizes[policy] = sizes.get(policy, 0) + 1
    return sizes


async def wait_until(predicate: Callable[[], bool], limit: float = 5) -> None:
    """Wait for a condition on server state, deadline-bound (the server has no event for it)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling server tables, no event to wait on
            await anyio.sleep(0.005)


class GoodClient:
    """A well-behaved client calling `echo` with an ack every few ms in the background."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = socketio.AsyncClient(reconnection=False)
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._tick = anyio.Event()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await self.client.connect(self.url, transports=["websocket"], wait_timeout=5)
        task_status.started()
        n = 0
        while True:
            n += 1
            started = time.perf_counter()
            try:
                reply = await self.client.call("echo", {"n": n}, timeout=3)
            except Exception as exc:  # a timeout or a lost connection is a failure
                self.failures.append(f"{n}: {type(exc).__name__}: {exc}")
                self._signal()
                return
            self.latencies.append(time.perf_counter() - started)
            if reply != {"n": n}:
                self.failures.append(f"{n}: wrong reply {reply!r}")
            self._signal()
            await anyio.sleep(0.003)  # pacing, not synchronisation

    def _signal(self) -> None:
        self._tick.set()
        self._tick = anyio.Event()

    async def acks(self, more: int) -> list[float]:
        """Wait for `more` further acks; return their latencies."""
        start = len(self.latencies)
        with anyio.fail_after(10):
            while len(self.latencies) < start + more:
                assert not self.failures, self.failures
                await self._tick.wait()
        assert not self.failures, self.failures
        return self.latencies[start : start + more]


@contextlib.asynccontextmanager
async def scene(
    write_profile: Callable[..., Path], text: str
) -> AsyncIterator[tuple[Running, GoodClient]]:
    """A server, a good client acking in the background; memory checked at the end."""
    async with serving(write_profile(text)) as running, anyio.create_task_group() as tasks:
        good = GoodClient(running.url)
        await tasks.start(good.run)
        await good.acks(10)
        baseline = tables(running)
        gc.collect()
        rss_before = rss()
        yield running, good
        # acks keep arriving after the attack, and the attack left nothing behind
        await good.acks(20)
        await wait_until(lambda: tables(running) == baseline)
        gc.collect()
        delta = rss() - rss_before
        print(f"RSS delta after attack: {delta / 2**20:+.1f} MiB")
        assert delta < RSS_BOUND
        tasks.cancel_scope.cancel()
        await good.client.disconnect()


class Raw:
    """A raw Engine.IO websocket: what a hostile client writes, frame by frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, eio_sid: str) -> None:
        self.ws = ws
        self.eio_sid = eio_sid
        self.received: list[str | bytes] = []

    async def connect(self, namespace: str = "/") -> str:
        """Send CONNECT and return the server's answer (`40...` or `44...`)."""
        await self.ws.send_str("40" if namespace == "/" else f"40{namespace},")
        while True:
            text = await self.text()
            if text.startswith(("40", "44")):
                return text

    async def text(self) -> str:
        """The next text frame (the handler's `welcome` event is skipped)."""
        with anyio.fail_after(5):
            while True:
                message = await self.ws.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                text: str = message.data
                if not text.startswith('42["welcome"'):
                    return text

    async def closed(self) -> int | None:
        """Wait for the server to close the websocket; return the close code."""
        with anyio.fail_after(5):
            while True:
                message = await self.ws.receive()
                if message.type in CLOSED:
                    return self.ws.close_code
                if message.type == aiohttp.WSMsgType.ERROR:
                    return None
                self.received.append(message.data)

    async def send(self, *frames: str | bytes) -> None:
        """Send Engine.IO frames as they are (`42[...]` is an Engine.IO MESSAGE + an EVENT)."""
        for frame in frames:
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)


@contextlib.asynccontextmanager
async def raw_ws(running: Running, *, connect: bool = True) -> AsyncIterator[Raw]:
    url = running.url.replace("http", "ws", 1) + WS_PATH
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        with anyio.fail_after(5):
            opening = await ws.receive()
        assert opening.type == aiohttp.WSMsgType.TEXT
        assert opening.data.startswith("0{")
        raw = Raw(ws, json.loads(opening.data[1:])["sid"])
        if connect:
            assert (await raw.connect()).startswith("40{")
        yield raw


# -- 1. connect timeout ----------------------------------------------------------------------


async def test_silent_client_is_closed_after_connect_timeout(
    write_profile: Callable[..., Path],
) -> None:
    async with scene(write_profile, profile()) as (running, _good), raw_ws(running) as connected:
        # opened after `connected` connected, so its deadline passes after that one's
        async with raw_ws(running, connect=False) as silent:
            started = time.perf_counter()
            assert await silent.closed() == 1000
            waited = time.perf_counter() - started
            assert "1" in silent.received  # the Engine.IO CLOSE packet came first
            assert 0.3 < waited < 3
        # a refused CONNECT does not stop the clock either
        async with raw_ws(running, connect=False) as refused:
            assert (await refused.connect("/legacy")).startswith("44/legacy,")
            assert await refused.closed() == 1000
        # a client that connected in time is not affected by its deadline
        await connected.send('421["echo","still here"]')
        assert await connected.text() == '431["still here"]'


# -- 2. malformed packets --------------------------------------------------------------------

MALFORMED: dict[str, list[str | bytes]] = {
    "invalid JSON": ['42["x"'],
    "unknown Socket.IO packet type": ["49"],
    "ack for an id never issued": ["43999[]"],
    "non-array payload": ['42{"a":1}'],
    "NaN": ['42["echo",NaN]'],
    "binary header, then a text frame": [BINARY_HEADER, '42["echo",1]'],
    "empty event": ["42[]"],
    "event name not a string": ["42[5]"],
    "binary frame without a header": [b"\x00\x01"],
    "CONNECT payload not an object": ["40[1]"],
    "empty Socket.IO packet": ["4"],
    # Engine.IO level: python-engineio must never see these (it would json-decode or crash)
    "unknown Engine.IO packet type": ["9"],
    "empty Engine.IO packet": [""],
    "not a digit": ["x"],
    "Engine.IO message that is JSON, not Socket.IO": ['4{"a":[[[[1]]]]}'],
    "Engine.IO message nested past the recursion limit": ["4" + "[" * 100_000],
    "bad base64": ["b!!!"],
    "long control packet": ["3" + "[" * 5000],
}


@pytest.fixture(params=["engine", "hypercorn"])
def ws_server(request: pytest.FixtureRequest) -> str:
    """`server.websocket_server`: the engine's own WebSocket layer, or hypercorn's."""
    return f'websocket_server = "{request.param}"\n'


async def test_malformed_packet_closes_with_one_log_line(
    write_profile: Callable[..., Path], caplog: pytest.LogCaptureFixture, ws_server: str
) -> None:
    async with scene(write_profile, profile(ws_server)) as (running, _good):
        for case, frames in MALFORMED.items():  # one server, a fresh session per case
            async with raw_ws(running, connect=frames != ["40[1]"]) as raw:
                caplog.clear()
                with caplog.at_level(logging.WARNING):
                    await raw.send(*frames)
                    # a pipelined burst behind it is dropped unread: one line, no traceback
                    with contextlib.suppress(ConnectionError):
                        await raw.send(*(frames[-1:] * 20))
                    assert await raw.closed() in (1000, 1002), case
                # engine.server (Socket.IO) or engine.transport.hardening (Engine.IO) says why;
                # engine.security has its structured event beside it
                lines = [
                    r
                    for r in caplog.records
                    if r.name in ("engine.server", "engine.transport.hardening")
                ]
                assert len(lines) == 1, (case, [r.getMessage() for r in lines])
                message = lines[0].getMessage()
                assert lines[0].levelno == logging.WARNING, case
                assert raw.eio_sid in message, (case, message)
                assert "malformed packet" in message, (case, message)
                assert "\n" not in message, case
                assert not [r for r in caplog.records if r.exc_info], (case, "traceback logged")


# -- 3. frame size in bytes ------------------------------------------------------------------


async def test_frame_size_is_counted_in_bytes(
    write_profile: Callable[..., Path], ws_server: str
) -> None:
    limit = ws_server + "max_payload_bytes = 1000"
    async with scene(write_profile, profile(limit)) as (running, _good):
        emoji = "\U0001f600"  # 4 UTF-8 bytes, 1 character
        async with raw_ws(running) as raw:
            await raw.send(f'421["echo","{emoji * 200}"]')  # 813 bytes
            reply = await raw.text()
            assert reply.startswith("431")
            assert json.loads(reply[3:]) == [emoji * 200]
        # over the limit: the TCP connection is aborted (no close handshake): 1006 here
        async with raw_ws(running) as raw:
            await raw.send(f'421["echo","{emoji * 400}"]')  # 400 chars, 1613 bytes
            assert await raw.closed() == 1006
        async with raw_ws(running) as raw:
            with contextlib.suppress(ConnectionError):
                await raw.send('421["echo","' + "a" * 4_000_000 + '"]')
            assert await raw.closed() == 1006


async def ws_handshake(host: str, port: int, local: str | None = None) -> Any:
    """A raw TCP WebSocket handshake on the Engine.IO path; returns the open stream."""
    stream = await anyio.connect_tcp(host, port, local_host=local)
    await stream.send(
        f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return stream


async def test_oversize_frame_aborts_without_reading_the_rest(
    write_profile: Callable[..., Path], ws_server: str
) -> None:
    """A frame announcing 64 MiB is cut off near the limit, not read to its end."""
    limit = ws_server + "max_payload_bytes = 100000"
    async with scene(write_profile, profile(limit)) as (running, _good):
        stream = await ws_handshake(running.host, running.port)
        async with stream:
            with anyio.fail_after(5):
                head = b""
                while b'0{"sid"' not in head:  # 101 response, then the OPEN frame
                    head += await stream.receive()
            assert head.startswith(b"HTTP/1.1 101")
            total = 64 * 2**20
            # FIN + text, masked, 64-bit length; a zero mask key leaves the payload as is
            await stream.send(bytes([0x81, 0xFF]) + total.to_bytes(8, "big") + bytes(4))
            chunk = b"4" * 2**16
            sent = 0
            with anyio.fail_after(10), contextlib.suppress(anyio.BrokenResourceError, OSError):
                while sent < total:
                    await stream.send(chunk)
                    sent += len(chunk)
            # the server aborted: what it read is bounded by the limit plus socket buffers
            assert sent < total // 2, sent
            with anyio.fail_after(5), contextlib.suppress(anyio.BrokenResourceError, OSError):
                received = b""
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        received += await stream.receive()
                assert b"\x88" not in received[:2]  # no close frame: aborted


BAN_QUICKLY = """
[security.rate_limits]
connects_per_ip = { rate_per_second = 0.001, burst = 1 }

[security.abuse]
strikes = 2
window_seconds = 60
ladder_seconds = [60]
"""


async def test_banned_address_is_closed_at_accept(write_profile: Callable[..., Path]) -> None:
    """After a ban, a connection from the address gets no HTTP byte: closed at accept."""
    async with scene(write_profile, profile(extra=BAN_QUICKLY)) as (running, _good):
        guard = running.engine.sio.guard

        async def attempt(local: str) -> bytes:
            stream = await ws_handshake(running.host, running.port, local)
            data = b""
            async with stream:
                with (
                    anyio.fail_after(5),
                    contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError),
                ):
                    while b"\r\n\r\n" not in data:
                        data += await stream.receive()
            return data

        statuses = [(await attempt("127.0.0.2"))[:12] for _ in range(3)]
        # burst 1: admitted, then a 429 (strike 1), then the second strike's ban (403)
        assert statuses == [b"HTTP/1.1 101", b"HTTP/1.1 429", b"HTTP/1.1 403"], statuses
        assert "127.0.0.2" in guard.banned_peers.until
        refused = guard.banned_peers.refused
        assert await attempt("127.0.0.2") == b""  # no response at all
        assert guard.banned_peers.refused == refused + 1
        # another address is served as before
        assert (await attempt("127.0.0.3"))[:12] == b"HTTP/1.1 101"


async def test_oversize_polling_body_is_refused_unread(write_profile: Callable[..., Path]) -> None:
    async with scene(write_profile, profile("max_payload_bytes = 1000")) as (running, _good):
        async with httpx.AsyncClient() as http:
            opening = await http.get(running.url + POLL_PATH)
        eio_sid = json.loads(opening.text[1:])["sid"]
        target = f"{POLL_PATH}&sid={eio_sid}"

        async def post(head: str, body: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(running.host, running.port)
            try:
                writer.write(head.encode() + b"\r\n" + body)
                await writer.drain()
                with anyio.fail_after(5):
                    return await reader.readuntil(b"\r\n\r\n")
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        host = f"Host: {running.host}:{running.port}\r\n"
        # a declared length beyond the limit: 413 although the body is never sent
        head = f"POST {target} HTTP/1.1\r\n{host}Content-Length: 100000000\r\n"
        response = await post(head, b"40")
        assert response.startswith(b"HTTP/1.1 413"), response
        # chunked, no declared length: 413 once the received bytes pass the limit
        head = f"POST {target} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n"
        chunk = b"258\r\n" + b"x" * 600 + b"\r\n"  # 0x258 = 600 bytes
        response = await post(head, chunk * 2)
        assert response.startswith(b"HTTP/1.1 413"), response


# -- 4. binary attachments -------------------------------------------------------------------

ATTACHMENT_LIMITS = """
[security.payload]
max_attachments = 2
max_attachment_bytes = 1000
"""


async def test_attachment_count_and_bytes_are_bounded(
    write_profile: Callable[..., Path],
) -> None:
    text = profile(extra=ATTACHMENT_LIMITS)
    async with scene(write_profile, text) as (running, _good):
        sio = running.engine.sio
        # a million attachments announced: refused at once, nothing kept for it
        async with raw_ws(running) as raw:
            await raw.send('451000000-["echo",{"_placeholder":true,"num":0}]')
            refusal = await raw.text()
            assert refusal.startswith('42["error"'), refusal
            assert json.loads(refusal[2:])[1]["code"] == "invalid_payload"
            assert raw.eio_sid not in sio._binary_packet
            # the attachments that follow are not buffered: the first one closes the session
            await raw.send(b"\x00" * 100_000)
            with contextlib.suppress(ConnectionError):
                await raw.send(*[b"\x00" * 100_000] * 5)
            assert await raw.closed() == 1000
        # two attachments of 800 bytes each: 1600 > max_attachment_bytes
        header = '452-0["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
        async with raw_ws(running) as raw:
            await raw.send(header, b"a" * 800)
            await wait_until(lambda: raw.eio_sid in sio._binary_packet)
            await raw.send(b"b" * 800)
            assert await raw.closed() == 1000
            assert raw.eio_sid not in sio._binary_packet
        # a binary header, then the client vanishes: its half packet is forgotten
        async with raw_ws(running) as raw:
            await raw.send(BINARY_HEADER)
            await wait_until(lambda: raw.eio_sid in sio._binary_packet)
        await wait_until(lambda: not sio._binary_packet)
        # within the limits, a real client's attachments are echoed
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(running.url, transports=["websocket"], wait_timeout=5)
        assert await client.call("echo", [b"a" * 400, b"b" * 400], timeout=5) == [
            b"a" * 400,
            b"b" * 400,
        ]
        await client.disconnect()


# -- 5. expensive but legal payloads ---------------------------------------------------------


async def test_expensive_payload_is_refused_cheaply(write_profile: Callable[..., Path]) -> None:
    limits = "[security.payload]\nmax_bytes = 4000000\n"
    text = profile("max_payload_bytes = 4000000", limits)
    async with scene(write_profile, text) as (running, good):
        document = json.dumps({f"key{i:06}": i for i in range(100_000)})
        assert len(document) > 1_000_000
        started = time.perf_counter()
        json.loads(document)
        decode = time.perf_counter() - started
        refusals = []
        async with raw_ws(running) as raw:
            for ack_id in range(1, 6):
                started = time.perf_counter()
                await raw.send(f'42{ack_id}["echo",{document}]')
                reply = await raw.text()
                refusals.append(time.perf_counter() - started)
                assert reply.startswith(f"43{ack_id}["), reply[:80]
                error = json.loads(reply[2 + len(str(ack_id)) :])[0]["error"]
                assert error["code"] == "invalid_payload"
                assert "more than 1000 keys" in error["message"]
            during = await good.acks(20)
        print(
            f"\n100k-key payload ({len(document)} bytes): refusal round trip "
            f"p50={statistics.median(refusals) * 1000:.1f} ms "
            f"max={max(refusals) * 1000:.1f} ms; json.loads alone {decode * 1000:.1f} ms; "
            f"good client ack max during: {max(during) * 1000:.1f} ms"
        )


# -- 6. connect flood ------------------------------------------------------------------------

FLOOD = """
[security.rate_limits]
connects_per_ip = { rate_per_second = 5, burst = 10 }
"""


async def test_connect_flood_is_refused_and_connected_clients_keep_latency(
    write_profile: Callable[..., Path],
) -> None:
    text = profile('trusted_proxies = ["127.0.0.1/32"]', FLOOD)
    async with scene(write_profile, text) as (running, good):
        before = await good.acks(50)
        responses: list[tuple[int, dict[str, str], bytes]] = []
        concurrency = anyio.Semaphore(20)

        async def handshake(address: str) -> tuple[int, dict[str, str], bytes]:
            # a raw HTTP/1.1 client: httpx's pool costs O(pending^2) in this same event loop
            async with concurrency:
                stream = await anyio.connect_tcp(running.host, running.port)
                async with stream:
                    await stream.send(
                        f"GET {POLL_PATH} HTTP/1.1\r\nHost: {running.host}\r\n"
                        f"X-Forwarded-For: {address}\r\nConnection: close\r\n\r\n".encode()
                    )
                    data = b""
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while True:
                            data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in header_lines)
            return int(status_line.split()[1]), headers, body

        async def flood_one() -> None:
            responses.append(await handshake("10.9.9.9"))

        during_start = len(good.latencies)
        started = time.perf_counter()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as flood:
                for _ in range(300):
                    flood.start_soon(flood_one)
        flood_seconds = time.perf_counter() - started
        during = good.latencies[during_start:]
        status, _, body = await handshake("10.1.1.1")
        assert status == 200
        assert b'0{"sid"' in body  # the OPEN packet (the body may be chunked)
        statuses = [status for status, _, _ in responses]
        assert statuses.count(429) >= 250, sorted(set(statuses))
        assert set(statuses) <= {200, 429}
        for status, headers, body in responses:
            if status == 429:
                refusal = json.loads(body)["data"]
                assert refusal["code"] == "rate_limited"
                assert refusal["retry_after_seconds"] > 0
                assert int(headers["retry-after"]) >= 1
        after = await good.acks(20)
        assert len(during) >= 1, "no ack arrived during the flood"
        assert max(during) < 1.0, "the flood starved a connected client"
        assert set(limiter_sizes(running)) == {"connects_per_ip"}
        assert limiter_sizes(running)["connects_per_ip"] <= 3  # 127.0.0.1, 10.9.9.9, 10.1.1.1
        print(
            f"\nconnect flood: {statuses.count(429)}/300 refused with 429 "
            f"in {flood_seconds:.2f} s; good client acks "
            f"before p50={statistics.median(before) * 1000:.2f} ms "
            f"max={max(before) * 1000:.2f} ms; "
            f"during ({len(during)} acks) p50={statistics.median(during) * 1000:.2f} ms "
            f"max={max(during) * 1000:.2f} ms; "
            f"after p50={statistics.median(after) * 1000:.2f} ms"
        )


# -- 7. a mixed attack -----------------------------------------------------------------------


async def test_mixed_attack_leaves_no_state_behind(write_profile: Callable[..., Path]) -> None:
    text = profile("max_payload_bytes = 100000", ATTACHMENT_LIMITS)
    async with scene(write_profile, text) as (running, _good):

        async def silent() -> None:
            async with raw_ws(running, connect=False) as raw:
                await raw.closed()

        async def malformed() -> None:
            async with raw_ws(running) as raw:
                await raw.send('42["x"')
                await raw.closed()

        async def oversize() -> None:
            async with raw_ws(running) as raw:
                with contextlib.suppress(ConnectionError):
                    await raw.send('42["echo","' + "\U0001f600" * 30_000 + '"]')
                await raw.closed()

        async def attachments() -> None:
            async with raw_ws(running) as raw:
                await raw.send(BINARY_HEADER, b"x" * 2000)
                await raw.closed()

        async def half_binary() -> None:
            async with raw_ws(running) as raw:
                await raw.send(BINARY_HEADER)  # then vanish mid-packet

        async def vanish() -> None:
            async with raw_ws(running):
                pass  # connected, then gone without DISCONNECT

        async def polling(http: httpx.AsyncClient) -> None:
            response = await http.get(running.url + POLL_PATH)
            assert response.status_code == 200

        attacks: list[Callable[[], Awaitable[None]]] = [
            silent,
            malformed,
            oversize,
            attachments,
            half_binary,
            vanish,
        ]
        limiter = anyio.Semaphore(40)
        async with httpx.AsyncClient() as http:

            async def one(attack: Callable[[], Awaitable[None]]) -> None:
                async with limiter:
                    await attack()

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tasks:
                    for i in range(300):
                        attack = attacks[i % len(attacks)] if i % 7 else (lambda: polling(http))
                        tasks.start_soon(one, attack)
        # the polling sessions never connect: their deadline closes them (checked by scene)


async def test_closed_connections_leave_no_cyclic_garbage(
    write_profile: Callable[..., Path], ws_server: str
) -> None:
    """A finished connection is freed by reference counting: nothing waits for the collector
    (hypercorn's connection objects used to form cycles: ~90 objects per connection)."""
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.protocol.ws_stream import WSStream

    from engine.transport.direct import DirectWebSocket
    from engine.transport.fastpath import FastSocket

    async with scene(write_profile, profile(ws_server)) as (running, _good):
        baseline = tables(running)
        gc.collect()
        for _ in range(20):
            async with raw_ws(running) as raw:
                await raw.send('421["echo","x"]')
                assert (await raw.text()).startswith("431")
        await wait_until(lambda: tables(running) == baseline)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            kinds = (TCPServer, WSStream, FastSocket, DirectWebSocket)
            server_side = [o for o in gc.garbage if isinstance(o, kinds)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert server_side == []
