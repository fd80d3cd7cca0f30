"""RFC 6455 for a server, as pure functions: the opening handshake and the frame format.

`parse_handshake` decides which request heads the engine's own WebSocket layer
(`engine.transport.direct`) takes: only a plain, valid HTTP/1.1 WebSocket handshake for the
Socket.IO path; anything else is hypercorn's, so the two HTTP parsers on one port never
disagree on what a request is (property-tested against h11). `frame`/`unmask` build and
unmask frames; the rules a frame must follow are checked where frames are read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

MAX_HEAD_BYTES = 16 * 1024  # as h11's default limit on an incomplete request head
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# opcodes
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# close codes
NORMAL, PROTOCOL_ERROR, INVALID_DATA = 1000, 1002, 1007


class Handshake:
    """A parsed request head that qualifies for the direct path."""

    __slots__ = ("headers", "key", "path", "query", "rest")

    def __init__(
        self, path: str, query: str, headers: dict[str, str], key: str, rest: bytes
    ) -> None:
        self.path = path
        self.query = query
        self.headers = headers  # lower-case names; repeated headers joined with ","
        self.key = key
        self.rest = rest  # bytes after the head (a client must wait for the 101, but may not)


def parse_handshake(data: bytes, paths: tuple[str, ...], compression: bool) -> Handshake | None:
    """The WebSocket handshake in `data` if the engine should serve it, else None.

    None for anything not a plain, valid HTTP/1.1 WebSocket handshake for one of `paths`:
    hypercorn then answers it as it always did (its errors, its 400s), so the direct path
    never has to reproduce an error response of h11's.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        head = data[:end].decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        return None
    path, _, query = parts[1].partition("?")
    if path not in paths:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            return None  # also an obs-fold line (leading whitespace)
        value = value.strip(" \t")
        if _BAD_VALUE.search(value):
            return None
        name = name.lower()
        if name in headers:
            if name == "host":
                return None  # exactly one Host (RFC 9112 3.2); h11 answers 400
            headers[name] = f"{headers[name]},{value}"
        else:
            headers[name] = value
    if "content-length" in headers or "transfer-encoding" in headers or "host" not in headers:
        return None
    if headers.get("upgrade", "").lower() != "websocket":
        return None
    if "upgrade" not in {t.strip().lower() for t in headers.get("connection", "").split(",")}:
        return None
    if headers.get("sec-websocket-version") != "13":
        return None
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    if compression and "permessage-deflate" in headers.get("sec-websocket-extensions", ""):
        return None  # hypercorn negotiates it
    return Handshake(path, query, headers, key, data[end + 4 :])


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (the server never fragments)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (no per-byte Python loop)."""
    n = len(data)
    if not n:
        return b""
    key = (bytes(mask) * ((n + 3) // 4))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class ProtocolViolation(Exception):
    """A client frame breaks RFC 6455; `code` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def valid_close_code(code: int) -> bool:
    """A close code a peer may send (RFC 6455 7.4: not 1004-1006, 1015, or unassigned)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
