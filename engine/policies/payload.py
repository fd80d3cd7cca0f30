"""Payload limits, enforced twice.

:func:`prescan` runs over the raw JSON text before ``json.loads``: decoding a hostile payload is
itself the attack (100k keys, deep nesting that overflows the recursion limit, a huge string),
so the cheap pass bounds the work first and stops at the first violation. :func:`check` runs
over the decoded value for what raw text cannot show cheaply: deny patterns and binary
attachments. Together they accept exactly the payloads within the limits.

Shared definitions (both passes agree on them):

- size is the UTF-8 length of the raw text (lone surrogates count 3 bytes);
- depth counts containers: a scalar has depth 0, ``[]`` 1, ``{"a": []}`` 2;
- string length is in code points of the decoded string and applies to keys too;
- NaN and +/-Infinity are refused (Python's json accepts them, other peers do not);
- in raw text, duplicate keys count separately (the work was done even if decoding dedupes).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PayloadLimits", "Violation", "check", "prescan", "prescan_packet"]


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a payload was refused.

    ``path`` (``$``, ``$.key``, ``$[3]``) names the offending value: the container itself for
    too many keys/elements or a bad key, the string/number otherwise.
    """

    reason: str
    path: str
    code: str = "invalid_payload"
    # not JSON at all (as opposed to JSON over a limit); implied by the reason, so not compared
    malformed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """Limits from ``[security.payload]``."""

    max_bytes: int
    max_depth: int
    max_keys: int
    max_array_length: int
    max_string_length: int
    allow_binary: bool
    max_attachments: int
    max_attachment_bytes: int
    deny_patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> PayloadLimits:
        """Build from the validated table; ``deny_patterns`` are regex sources (``re.search``)."""
        return cls(
            max_bytes=int(mapping["max_bytes"]),
            max_depth=int(mapping["max_depth"]),
            max_keys=int(mapping["max_keys"]),
            max_array_length=int(mapping["max_array_length"]),
            max_string_length=int(mapping["max_string_length"]),
            allow_binary=bool(mapping["allow_binary"]),
            max_attachments=int(mapping["max_attachments"]),
            max_attachment_bytes=int(mapping["max_attachment_bytes"]),
            deny_patterns=tuple(re.compile(p) for p in mapping.get("deny_patterns", ())),
        )


# One value (or closing bracket) per match, with the separator before it: halving the Python
# iterations matters more than anything else here. Strings are skipped with str.find (memchr
# speed), not the regex engine, so a megabyte string costs about what json.loads pays for it.
_TOKEN = re.compile(
    r"[ \t\n\r]*(?P<sep>[,:]?)[ \t\n\r]*"
    r'(?:(?P<q>")|(?P<o>[{\[])|(?P<c>[}\]])|(?P<b>[^ \t\n\r"{}\[\],:]+))'
)
# Runs of plain scalars inside an array ("1, 2, true, null, ..."), counted by their commas in C.
# Chunked so a run never overshoots the element limit by more than the chunk.
_SCALAR_RUN = re.compile(
    r"(?:[ \t\n\r]*,[ \t\n\r]*(?:-?[0-9][0-9.eE+-]*|true|false|null)(?=[ \t\n\r,\]]))"
    r"{1,512}"
)
# Runs of simple members inside an object (',"key": 1' or ',"key": "short"'). Strings here have
# no escapes, ':' or ',' and at most 64 characters, so ':' counts members exactly and no string
# check is needed when max_string_length >= 64.
_SHORT = r'"[^"\\:,]{0,64}"'
_MEMBER_RUN = re.compile(
    rf"(?:[ \t\n\r]*,[ \t\n\r]*{_SHORT}[ \t\n\r]*:[ \t\n\r]*"
    rf"(?:(?:-?[0-9][0-9.eE+-]*|true|false|null)(?=[ \t\n\r,}}])|{_SHORT})){{1,512}}"
)
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


def _utf8_size(text: str, limit: int) -> int:
    """UTF-8 size of ``text``, skipping the encode when the length alone decides."""
    if len(text) > limit or len(text) * 4 <= limit:
        return len(text)  # > limit already, or surely within it
    return len(text.encode("utf-8", "surrogatepass"))


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the string opened just before ``start``, or -1.

    A quote is closing when preceded by an even number of backslashes; each backslash is
    counted for at most one quote, so the scan stays linear.
    """
    find = text.find
    pos = start
    while True:
        end = find('"', pos)
        if end == -1:
            return -1
        back = end - 1
        while back >= start and text[back] == "\\":
            back -= 1
        if (end - 1 - back) % 2 == 0:
            return end
        pos = end + 1


def _decoded_length(text: str, start: int, end: int, limit: int) -> int | None:
    """Code points of the JSON string ``text[start:end]``, decoding only when escapes matter."""
    raw = end - start
    if raw <= limit or text.find("\\", start, end) == -1:
        return raw
    try:
        value = json.loads(text[start - 1 : end + 1])
    except ValueError:
        return None
    return len(value) if isinstance(value, str) else None


def _key_step(key: str) -> str:
    """Path step for an object key; long attacker-chosen keys are truncated."""
    if key.isidentifier() and len(key) <= 64:
        return f".{key}"
    return f"[{json.dumps(key[:64])}]"


def _path(stack: list[list[Any]]) -> str:
    """Path of the value being read: each open container contributes its current key/index."""
    parts = ["$"]
    for is_obj, count, key in stack:
        if is_obj:
            if key is None:
                break
            try:
                name = json.loads(key)
            except ValueError:
                name = key
            parts.append(_key_step(name if isinstance(name, str) else key))
        else:
            if count == 0:
                break
            parts.append(f"[{count - 1}]")
    return "".join(parts)


def prescan(text: str, limits: PayloadLimits) -> Violation | None:
    """Bound the raw JSON ``text`` before decoding; stops at the first violation.

    Malformed text that cannot be valid JSON (unterminated string, unbalanced brackets, stray
    separators) is refused too, since decoding it would fail anyway.
    """
    if _utf8_size(text, limits.max_bytes) > limits.max_bytes:
        return Violation(f"payload exceeds {limits.max_bytes} bytes", "$")
    max_depth = limits.max_depth
    max_keys = limits.max_keys
    max_items = limits.max_array_length
    max_str = limits.max_string_length
    token_at = _TOKEN.match
    scalar_run = _SCALAR_RUN.match
    member_run = _MEMBER_RUN.match if max_str >= 64 else None
    # Frames are [is_object, members_so_far, raw_last_key].
    stack: list[list[Any]] = []
    pos = 0
    while True:
        match = token_at(text, pos)
        if match is None:
            if not text[pos:].strip(" \t\n\r"):
                break
            return Violation("malformed JSON", _path(stack), malformed=True)
        pos = match.end()
        kind = match.lastgroup
        if kind == "c":
            closing_object = text[pos - 1] == "}"
            if not stack or stack[-1][0] != closing_object:
                return Violation("unbalanced brackets", _path(stack), malformed=True)
            stack.pop()
            continue
        if kind == "q":
            end = _string_end(text, pos)
            if end == -1:
                return Violation("unterminated string", _path(stack), malformed=True)
            start, pos = pos, end + 1
        if stack:
            top = stack[-1]
            if top[0]:
                if kind == "q" and match["sep"] != ":":
                    top[1] += 1
                    if top[1] > max_keys:
                        return Violation(f"object has more than {max_keys} keys", _path(stack[:-1]))
                    size = _decoded_length(text, start, end, max_str)
                    if size is None or size > max_str:
                        return Violation(f"key longer than {max_str} characters", _path(stack[:-1]))
                    top[2] = text[start - 1 : end + 1] if end - start <= 256 else '"\u2026"'
                    continue
            else:
                top[1] += 1
                if top[1] > max_items:
                    return Violation(f"array has more than {max_items} elements", _path(stack[:-1]))
        if kind == "q" or kind == "b":
            if kind == "q":
                size = _decoded_length(text, start, end, max_str)
                if size is None or size > max_str:
                    return Violation(f"string longer than {max_str} characters", _path(stack))
            elif (token := match["b"]) in _NON_FINITE:
                return Violation(f"{token} is not a JSON number", _path(stack), malformed=True)
            if not stack:
                continue
            top = stack[-1]
            if not top[0]:
                if kind == "b":
                    while (run := scalar_run(text, pos)) is not None:
                        pos = run.end()
                        top[1] += run[0].count(",")
                        if top[1] > max_items:
                            return Violation(
                                f"array has more than {max_items} elements", _path(stack[:-1])
                            )
            elif member_run is not None:
                while (run := member_run(text, pos)) is not None:
                    pos = run.end()
                    top[1] += run[0].count(":")
                    if top[1] > max_keys:
                        return Violation(f"object has more than {max_keys} keys", _path(stack[:-1]))
        else:  # "{" or "["
            if len(stack) >= max_depth:
                return Violation(f"nesting deeper than {max_depth}", _path(stack))
            stack.append([text[pos - 1] == "{", 0, None])
    if stack:
        return Violation("unbalanced brackets", _path(stack), malformed=True)
    return None


_PACKET_HEADER = re.compile(r"(?:[56](?:(?P<attachments>[0-9]+)-)?|[0-4])(?:/[^,]*,)?[0-9]*")


def prescan_packet(text: str, limits: PayloadLimits) -> Violation | None:
    """:func:`prescan` a whole Socket.IO packet (``<type>[<n>-][/nsp,][<id>]<json>``).

    The byte limit covers the whole packet, and the attachment count announced in a binary
    packet's header is checked before any attachment arrives.
    """
    if _utf8_size(text, limits.max_bytes) > limits.max_bytes:
        return Violation(f"payload exceeds {limits.max_bytes} bytes", "$")
    header = _PACKET_HEADER.match(text)
    if header is None:
        return Violation("not a Socket.IO packet", "$", malformed=True)
    announced = header["attachments"]
    if announced is not None:
        if not limits.allow_binary:
            return Violation("binary attachments are not allowed", "$")
        if len(announced) > 9 or int(announced) > limits.max_attachments:
            return Violation(f"more than {limits.max_attachments} attachments", "$")
    return prescan(text[header.end() :], limits)


def check(value: object, limits: PayloadLimits) -> Violation | None:
    """Check a decoded payload (dict/list/tuple/str/int/float/bool/None/bytes) against limits.

    ``max_bytes`` is not checked here: only the raw text has a size (see :func:`prescan`).

    Iterative rather than recursive, so a value that did not come through :func:`prescan`
    cannot exhaust the stack.
    """
    attachments = 0
    patterns = limits.deny_patterns
    # (value, depth of the container holding it, path)
    pending: list[tuple[object, int, str]] = [(value, 0, "$")]
    while pending:
        item, depth, path = pending.pop()
        if isinstance(item, str):
            if len(item) > limits.max_string_length:
                return Violation(f"string longer than {limits.max_string_length} characters", path)
            for pattern in patterns:
                if pattern.search(item):
                    return Violation("string matches a denied pattern", path)
        elif item is None or isinstance(item, bool | int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Violation(f"{item} is not a JSON number", path)
        elif isinstance(item, dict):
            if depth >= limits.max_depth:
                return Violation(f"nesting deeper than {limits.max_depth}", path)
            if len(item) > limits.max_keys:
                return Violation(f"object has more than {limits.max_keys} keys", path)
            for key, child in item.items():
                if not isinstance(key, str):
                    return Violation("object keys must be strings", path)
                if len(key) > limits.max_string_length:
                    return Violation(f"key longer than {limits.max_string_length} characters", path)
                for pattern in patterns:
                    if pattern.search(key):
                        return Violation("key matches a denied pattern", path)
                child_path = path + _key_step(key)
                pending.append((child, depth + 1, child_path))
        elif isinstance(item, list | tuple):
            if depth >= limits.max_depth:
                return Violation(f"nesting deeper than {limits.max_depth}", path)
            if len(item) > limits.max_array_length:
                return Violation(f"array has more than {limits.max_array_length} elements", path)
            for i, child in enumerate(item):
                pending.append((child, depth + 1, f"{path}[{i}]"))
        elif isinstance(item, bytes | bytearray | memoryview):
            if not limits.allow_binary:
                return Violation("binary attachments are not allowed", path)
            attachments += 1
            if attachments > limits.max_attachments:
                return Violation(f"more than {limits.max_attachments} attachments", path)
            if memoryview(item).nbytes > limits.max_attachment_bytes:
                return Violation(
                    f"attachment larger than {limits.max_attachment_bytes} bytes", path
                )
        else:
            return Violation(f"unsupported value type {type(item).__name__}", path)
    return None
