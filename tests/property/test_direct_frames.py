"""The engine's WebSocket frame parser against the simplest model: the messages themselves.

Any sequence of text and binary messages, each cut into fragments, masked with any key,
with pings between frames and the byte stream cut into arbitrary chunks, comes out of
`DirectWebSocket` as the same messages in the same order, with one pong per ping carrying
the ping's payload.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.transport.direct import DirectWebSocket
from engine.transport.rfc6455 import Handshake, frame, unmask

LIMIT = 1 << 20


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 65536)

    def abort(self) -> None:  # pragma: no cover - the model never exceeds the limit
        raise AssertionError("aborted")


class _Writer:
    def __init__(self) -> None:
        self.transport = _Transport()

    def write(self, data: bytes) -> None:
        self.transport.written.append(data)


class _Reader:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def masked(opcode: int, payload: bytes, key: bytes, final: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if final else 0) | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + unmask(payload, key)  # masking is its own inverse


messages = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300).map(
            lambda t: "42" + t
        ),
        st.binary(max_size=300),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_messages_come_out_as_they_went_in(sent: list[str | bytes], data: Any) -> None:
    stream = b""
    pings: list[bytes] = []
    for message in sent:
        payload = message.encode() if isinstance(message, str) else message
        opcode = 1 if isinstance(message, str) else 2
        cuts = sorted(data.draw(st.sets(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for index, piece in enumerate(pieces):
            key = data.draw(st.binary(min_size=4, max_size=4))
            if data.draw(st.booleans()):
                ping = data.draw(st.binary(max_size=125))
                pings.append(ping)
                stream += masked(0x9, ping, key)
            stream += masked(
                opcode if index == 0 else 0, piece, key, final=index == len(pieces) - 1
            )
    splits = sorted(data.draw(st.sets(st.integers(1, max(len(stream) - 1, 1)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *splits], [*splits, len(stream)], strict=True)]
    writer = _Writer()
    handshake = Handshake("/socket.io/", "", {}, "", b"")
    ws = DirectWebSocket(_Reader(chunks), writer, handshake, LIMIT, guard=None)  # type: ignore[arg-type]

    async def receive_all() -> list[str | bytes]:
        got: list[str | bytes] = []
        for _ in sent:
            got.append(await ws.wait())
        return got

    assert asyncio.run(receive_all()) == sent
    assert writer.transport.written == [frame(0xA, ping) for ping in pings]


@given(st.binary(max_size=70_000))
@settings(max_examples=200, deadline=None)
def test_frame_header_encodes_the_length(payload: bytes) -> None:
    encoded = frame(0x2, payload)
    assert encoded[0] == 0x82
    short = encoded[1]
    start, length = 2, short
    if short == 126:
        start, length = 4, int.from_bytes(encoded[2:4], "big")
    elif short == 127:
        start, length = 10, int.from_bytes(encoded[2:10], "big")
    assert length == len(payload)
    assert encoded[start:] == payload
