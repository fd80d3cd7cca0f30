"""The wire protocol as the reference server speaks it (Engine.IO v4, Socket.IO v5).

One test per rule, written as raw HTTP requests and a raw WebSocket (no client library), against
a profile with a 0.3 s ping interval and a 0.2 s ping timeout: what a session does in its
heartbeat is seen within a second.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import anyio
import httpx
import pytest
import socketio

from engine.serve import Running
from tests.conftest import serving

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "protocol"
environment = "development"

[server]
ping_interval_seconds = 0.3
ping_timeout_seconds = 0.2
shutdown_grace_seconds = 1

[security.abuse]
strikes = 1000

[namespaces."/"]
handler = "tests.integration.test_protocol:Echo"

[namespaces."/custom"]
handler = "tests.integration.test_protocol:Echo"
"""
PATH = "/socket.io/"
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
# a malformed packet closes its session long before a heartbeat could (0.3 + 0.2 s)
PROMPT_SECONDS = 0.25


class Echo(socketio.AsyncNamespace):  # type: ignore[misc]
    """One event, and nothing sent on connect: the frames a test sees stay predictable."""

    async def on_echo(self, sid: str, data: object) -> object:
        return data


@pytest.fixture
async def running(write_profile: Callable[..., Path]) -> AsyncIterator[Running]:
    async with serving(write_profile(PROFILE)) as server:
        yield server


class Polling:
    """One Engine.IO long-polling session, request by request."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base
        self.sid = ""
        self.open: dict[str, object] = {}

    @property
    def url(self) -> str:
        return f"{self.base}{PATH}?EIO=4&transport=polling&sid={self.sid}"

    async def handshake(self) -> None:
        response = await self.http.get(f"{self.base}{PATH}?EIO=4&transport=polling")
        assert response.status_code == 200, response.text
        assert response.text.startswith("0{")
        self.open = json.loads(response.text[1:])
        self.sid = str(self.open["sid"])

    async def get(self) -> httpx.Response:
        with anyio.fail_after(5):
            return await self.http.get(self.url)

    async def packets(self) -> list[str]:
        response = await self.get()
        assert response.status_code == 200, response.text
        return response.text.split("\x1e")

    async def post(self, body: str) -> httpx.Response:
        with anyio.fail_after(5):
            return await self.http.post(self.url, content=body.encode())

    async def connect(self) -> None:
        """CONNECT to `/` and collect the answer."""
        assert (await self.post("40")).text == "ok"
        (answer,) = await self.packets()
        assert answer.startswith('40{"sid"'), answer


@contextlib.asynccontextmanager
async def polling(running: Running, *, connect: bool = True) -> AsyncIterator[Polling]:
    async with httpx.AsyncClient(timeout=5) as http:
        session = Polling(http, running.url)
        await session.handshake()
        if connect:
            await session.connect()
        yield session


class Raw:
    """A raw WebSocket, frame by frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, *frames: str) -> None:
        for frame in frames:
            await self.ws.send_str(frame)

    async def text(self) -> str:
        """The next text frame."""
        with anyio.fail_after(5):
            message = await self.ws.receive()
        assert message.type == aiohttp.WSMsgType.TEXT, message
        text: str = message.data
        return text

    async def closed(self) -> float:
        """Wait for the server to close the WebSocket; return how long that took."""
        started = time.perf_counter()
        with anyio.fail_after(5):
            while True:
                message = await self.ws.receive()
                if message.type in CLOSED or message.type == aiohttp.WSMsgType.ERROR:
                    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def websocket(running: Running, sid: str = "", *, opened: bool = True) -> AsyncIterator[Raw]:
    """A WebSocket to the engine: a new session, or the upgrade of session `sid`."""
    url = running.url.replace("http", "ws", 1) + f"{PATH}?EIO=4&transport=websocket"
    if sid:
        url += f"&sid={sid}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        raw = Raw(ws)
        if opened and not sid:
            assert (await raw.text()).startswith("0{")
        yield raw


async def connected_ws(raw: Raw, *namespaces: str) -> None:
    for namespace in namespaces:
        await raw.send("40" if namespace == "/" else f"40{namespace},")
        assert (await raw.text()).startswith("40" if namespace == "/" else f"40{namespace},{{")


# -- Engine.IO ---------------------------------------------------------------------------------


async def test_open_packet_advertises_fractional_ping_exactly(running: Running) -> None:
    async with polling(running, connect=False) as session:
        assert session.open["pingInterval"] == 300
        assert session.open["pingTimeout"] == 200
    async with websocket(running, opened=False) as raw:
        opening = json.loads((await raw.text())[1:])
        assert (opening["pingInterval"], opening["pingTimeout"]) == (300, 200)


BAD_REQUESTS = {
    "missing transport": ("GET", "?EIO=4"),
    "unknown transport": ("GET", "?EIO=4&transport=carrier-pigeon"),
    "unknown method": ("PATCH", "?EIO=4&transport=polling&sid={sid}"),
    "PUT with a session": ("PUT", "?EIO=4&transport=polling&sid={sid}"),
    "POST without a session": ("POST", "?EIO=4&transport=polling"),
    "PUT without a session": ("PUT", "?EIO=4&transport=polling"),
    "GET for an unknown sid": ("GET", "?EIO=4&transport=polling&sid=nope"),
    "POST for an unknown sid": ("POST", "?EIO=4&transport=polling&sid=nope"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
async def test_bad_request_gets_400_and_no_session(running: Running, case: str) -> None:
    method, query = BAD_REQUESTS[case]
    async with polling(running) as session:
        sessions = len(running.engine.sio.eio.sockets)
        response = await session.http.request(
            method, running.url + PATH + query.format(sid=session.sid), content=b"40"
        )
        assert response.status_code == 400, (case, response.status_code, response.text)
        assert len(running.engine.sio.eio.sockets) == sessions  # no new session either


async def test_closed_sid_gets_400(running: Running) -> None:
    async with polling(running) as session:
        assert (await session.post("1")).text == "ok"
        assert (await session.get()).status_code == 400
        assert (await session.post("40")).status_code == 400


async def test_websocket_for_an_unknown_sid_gets_400(running: Running) -> None:
    url = running.url.replace("http", "ws", 1) + f"{PATH}?EIO=4&transport=websocket&sid=nope"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
    assert refused.value.status == 400


async def test_http_request_for_an_upgraded_session_gets_400(running: Running) -> None:
    async with polling(running) as session, websocket(running, session.sid) as raw:
        await raw.send("2probe")
        assert await raw.text() == "3probe"
        await raw.send("5")
        await raw.send('421["echo","up"]')
        assert await raw.text() == '431["up"]'
        assert (await session.get()).status_code == 400
        assert (await session.post("40")).status_code == 400


async def test_late_pong_closes_a_polling_session_at_the_deadline(running: Running) -> None:
    async with polling(running) as session:
        assert await session.packets() == ["2"]  # the ping, after 0.3 s
        pinged = time.perf_counter()
        # no pong: the pending GET is answered with CLOSE when the 0.2 s are up
        assert await session.packets() == ["1"]
        waited = time.perf_counter() - pinged
        assert 0.15 < waited < 0.2 + 0.15, waited
        assert (await session.get()).status_code == 400


async def test_pong_in_time_keeps_a_polling_session(running: Running) -> None:
    async with polling(running) as session:
        for _ in range(3):
            assert await session.packets() == ["2"]
            assert (await session.post("3")).text == "ok"
        assert (await session.post('421["echo","alive"]')).text == "ok"
        assert await session.packets() == ['431["alive"]']


async def test_client_close_answers_the_pending_get_with_noop(running: Running) -> None:
    async with polling(running) as session:
        answers: list[httpx.Response] = []

        async def pending_get() -> None:
            answers.append(await session.get())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pending_get)
            await wait_for_pending_get(running, session.sid)
            assert (await session.post("1")).text == "ok"
        assert answers[0].status_code == 200
        assert answers[0].text == "6"
        assert (await session.get()).status_code == 400


async def wait_for_pending_get(running: Running, sid: str) -> None:
    """Until the server holds `sid`'s GET (there is no event for it: the server's state)."""
    with anyio.fail_after(5):
        while not running.engine.sio.eio.sockets[sid].polling:  # noqa: ASYNC110
            await anyio.sleep(0.002)


async def test_server_close_answers_the_pending_get_then_400(running: Running) -> None:
    async with polling(running) as session:
        answers: list[httpx.Response] = []

        async def pending_get() -> None:
            answers.append(await session.get())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pending_get)
            await wait_for_pending_get(running, session.sid)
            assert (await session.post("49")).text == "ok"  # malformed: the server closes
        assert answers[0].text == "1"
        assert (await session.get()).status_code == 400


async def test_server_close_without_a_pending_get_flushes_then_closes(running: Running) -> None:
    async with polling(running, connect=False) as session:
        # CONNECT, then a malformed packet, with no GET pending: the CONNECT's answer is
        # delivered first, the CLOSE in a response of its own, then the session is gone
        assert (await session.post("40\x1e49")).text == "ok"
        (answer,) = await session.packets()
        assert answer.startswith('40{"sid"')
        assert await session.packets() == ["1"]
        assert (await session.get()).status_code == 400


async def test_post_answers_ok(running: Running) -> None:
    async with polling(running, connect=False) as session:
        response = await session.post("40")
        assert response.status_code == 200
        assert response.text == "ok"


async def test_two_concurrent_gets_close_the_session(running: Running) -> None:
    async with polling(running) as session:
        first: list[httpx.Response] = []

        async def pending_get() -> None:
            first.append(await session.get())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pending_get)
            await wait_for_pending_get(running, session.sid)
            assert (await session.get()).status_code == 400
        assert first[0].text == "1"
        assert (await session.get()).status_code == 400


async def test_undecodable_post_gets_400_and_closes_the_session(running: Running) -> None:
    async with polling(running) as session:
        assert (await session.post("9garbage")).status_code == 400
        assert (await session.get()).status_code == 400


async def test_no_stray_frame_after_upgrade(running: Running) -> None:
    async with polling(running) as session, websocket(running, session.sid) as raw:
        # no GET is pending: engineio queues a NOOP "to end the poll" that nobody collects
        await raw.send("2probe")
        assert await raw.text() == "3probe"
        await raw.send("5")
        await raw.send('421["echo","first"]')
        assert await raw.text() == '431["first"]'
        assert await raw.text() == "2"  # then the next ping, nothing in between


async def test_second_websocket_after_upgrade_is_accepted_then_closed(running: Running) -> None:
    async with polling(running) as session, websocket(running, session.sid) as raw:
        await raw.send("2probe")
        assert await raw.text() == "3probe"
        await raw.send("5")
        async with websocket(running, session.sid) as second:  # 101: accepted at HTTP level
            assert await second.closed() < PROMPT_SECONDS
        await raw.send('421["echo","still"]')
        assert await raw.text() == '431["still"]'


@pytest.mark.parametrize("frame", ["5", "2probe"])
async def test_upgrade_or_probe_on_an_upgraded_session_closes_it(
    running: Running, frame: str
) -> None:
    async with websocket(running) as raw:
        await connected_ws(raw, "/")
        await raw.send(frame)
        assert await raw.closed() < PROMPT_SECONDS


# -- Socket.IO ---------------------------------------------------------------------------------

SPELLINGS = {
    "40": '40{"sid"',
    '40{"token":"t"}': '40{"sid"',
    "40/custom": '40/custom,{"sid"',
    "40/custom,": '40/custom,{"sid"',
    '40/custom,{"token":"t"}': '40/custom,{"sid"',
}


@pytest.mark.parametrize("frame", SPELLINGS)
async def test_connect_in_every_legal_spelling(running: Running, frame: str) -> None:
    async with websocket(running) as raw:
        await raw.send(frame)
        assert (await raw.text()).startswith(SPELLINGS[frame])


async def test_leaving_one_namespace_keeps_the_others(running: Running) -> None:
    async with websocket(running) as raw:
        await connected_ws(raw, "/", "/custom")
        await raw.send("41/custom,")
        # nothing answers the DISCONNECT: the next frame is the next ping
        assert await raw.text() == "2"
        await raw.send("3", '421["echo","on /"]')
        assert await raw.text() == '431["on /"]'
        await raw.send("40/custom,")  # and it may come back
        assert (await raw.text()).startswith('40/custom,{"sid"')


async def test_second_connect_to_a_connected_namespace_closes(running: Running) -> None:
    async with websocket(running) as raw:
        await connected_ws(raw, "/")
        await raw.send("40")
        assert await raw.closed() < PROMPT_SECONDS


@pytest.mark.parametrize(
    "frame", ['42/custom,["echo",1]', "41/custom,", '42["echo",1]', "43/custom,1[]"]
)
async def test_packet_for_a_namespace_not_connected_closes(running: Running, frame: str) -> None:
    async with websocket(running) as raw:
        if not frame.startswith("42["):  # '42["echo",1]' is sent as the very first packet
            await connected_ws(raw, "/")
        await raw.send(frame)
        assert await raw.closed() < PROMPT_SECONDS


RESERVED = ["connect", "connect_error", "disconnect", "disconnecting", "newListener"]


async def test_reserved_event_names_are_refused_like_unknown_events(running: Running) -> None:
    async with websocket(running) as raw:
        await connected_ws(raw, "/")
        for ack_id, name in enumerate([*RESERVED, "removeListener"]):
            await raw.send(f"42{ack_id}{json.dumps([name, 1])}")
            answer = await raw.text()
            assert answer.startswith(f"43{ack_id}["), answer
            assert json.loads(answer[2 + len(str(ack_id)) :])[0]["error"]["code"] == (
                "unknown_event"
            )
        await raw.send('42["disconnect"]')  # no ack asked: an `error` event
        event, body = json.loads((await raw.text())[2:])
        assert (event, body["code"]) == ("error", "unknown_event")


MALFORMED = {
    "unknown packet type": "47",
    "non-array event payload": '42{"a":1}',
    "ack id that is not a number": '43x["a"]',
    "ack for an id never issued": "43999[]",
    "event with no name": "42[]",
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_packet_closes_within_milliseconds(running: Running, case: str) -> None:
    async with websocket(running) as raw:
        await connected_ws(raw, "/")
        await raw.send(MALFORMED[case])
        assert await raw.closed() < PROMPT_SECONDS


@pytest.mark.parametrize("first", ["2", "41", '42["echo",1]', "40[1]", "4"])
async def test_invalid_first_packet_closes_within_milliseconds(
    running: Running, first: str
) -> None:
    async with websocket(running) as raw:
        await raw.send(first)
        assert await raw.closed() < PROMPT_SECONDS
