"""The engine's request-head parser never accepts what h11 (hypercorn's parser) would refuse.

`parse_handshake` decides which requests the engine serves itself; everything else goes to
hypercorn. Two HTTP parsers on one port must not disagree on what a request is (the root of
request smuggling), so the reference model is h11 itself: for any head built from valid and
hostile pieces (odd whitespace, control characters, folded lines, bare LF, duplicate and
missing headers, bodies), a head the engine takes must be one h11 parses into the same
method, target and header values.
"""

from __future__ import annotations

import base64

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.transport.rfc6455 import parse_handshake

PATHS = ("/socket.io", "/socket.io/")
KEY = base64.b64encode(b"0123456789abcdef").decode()
GOOD = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]
names = st.sampled_from(
    [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Origin",
        "Content-Length",
        "Transfer-Encoding",
        "X-Forwarded-For",
        "Bad Name",
        "Bad:Name",
        "",
    ]
)
values = st.one_of(
    st.sampled_from(["websocket", "Upgrade", KEY, "13", "0", "chunked", "1.2.3.4", "x"]),
    st.text(alphabet=st.sampled_from("ab \t\x00\x7f\r\n:,é"), max_size=8),
)
separators = st.sampled_from([": ", ":", " : ", ":\t", ":  "])
line_ends = st.sampled_from(["\r\n"] * 8 + ["\n", "\r\n "])
targets = st.sampled_from(
    [
        *["/socket.io/?EIO=4&transport=websocket"] * 6,
        "/socket.io?EIO=4&transport=websocket",
        "/socket.io/?EIO=4&transport=websocket&sid=abc",
        "/other/?transport=websocket",
        "/socket.io/ ?transport=websocket",
        "http://example.com/socket.io/?transport=websocket",
    ]
)
methods = st.sampled_from(["GET"] * 12 + ["POST", "get", "GET "])
versions = st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "HTTP/1.1 "])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    lines = [f"{draw(methods)} {draw(targets)} {draw(versions)}"]
    headers = list(GOOD)
    # drop, duplicate, replace or add headers
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        action = draw(st.sampled_from(["drop", "add", "replace"]))
        if action == "drop" and headers:
            headers.pop(draw(st.integers(0, len(headers) - 1)))
        elif action == "add":
            headers.append((draw(names), draw(values)))
        elif headers:
            index = draw(st.integers(0, len(headers) - 1))
            headers[index] = (headers[index][0], draw(values))
    end = draw(line_ends)
    for name, value in headers:
        lines.append(f"{name}{draw(separators)}{value}")
    text = end.join(lines) + "\r\n\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def h11_parse(data: bytes) -> h11.Request | None:
    connection = h11.Connection(h11.SERVER)
    try:
        connection.receive_data(data)
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


@settings(max_examples=3000, deadline=None)
@given(heads())
def test_a_head_the_engine_takes_is_one_h11_parses_alike(data: bytes) -> None:
    taken = parse_handshake(data, PATHS, compression=False)
    if taken is None:
        return
    request = h11_parse(data)
    assert request is not None, data
    assert request.method == b"GET"
    assert request.http_version == b"1.1"
    path, _, query = request.target.decode().partition("?")
    assert (path, query) == (taken.path, taken.query)
    parsed: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode().lower()
        parsed[key] = f"{parsed[key]},{value.decode()}" if key in parsed else value.decode()
    assert parsed == taken.headers, data


def test_the_plain_handshake_is_taken() -> None:
    head = "\r\n".join(
        ["GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", *(f"{k}: {v}" for k, v in GOOD)]
    )
    assert parse_handshake((head + "\r\n\r\n").encode(), PATHS, compression=False) is not None
