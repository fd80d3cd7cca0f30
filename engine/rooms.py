"""Declarative rooms: `auto_join` templates and `client_join` patterns. Pure, no I/O.

Templates name connection facts in braces: `{sid}`, `{namespace}`, `{user.id}`. A pattern may
also contain `*`, which matches one or more characters other than `:`, so `task:*` admits
`task:42` but not `task:42:private`. Values substituted into a pattern are matched literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

FIELDS = ("sid", "namespace", "user.id")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
MAX_ROOM_LENGTH = 200


class TemplateError(ValueError):
    """A template names an unknown field or has unbalanced braces."""


@dataclass(frozen=True, slots=True)
class RoomTemplate:
    """A parsed room template or pattern; `parts` alternate literal text and field names."""

    text: str
    parts: tuple[str, ...]
    wildcard: bool

    @classmethod
    def parse(cls, text: str, *, wildcard: bool = False) -> RoomTemplate:
        parts: list[str] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            field = match.group(1)
            if field not in FIELDS:
                raise TemplateError(
                    f"unknown field {{{field}}} (expected one of: "
                    + ", ".join("{" + f + "}" for f in FIELDS)
                    + ")"
                )
            parts.extend([text[pos : match.start()], field])
            pos = match.end()
        parts.append(text[pos:])
        literal = "".join(parts[::2])
        if "{" in literal or "}" in literal:
            raise TemplateError("unbalanced '{' or '}'")
        if not wildcard and "*" in literal:
            raise TemplateError("'*' is only allowed in client_join patterns")
        return cls(text, tuple(parts), wildcard)

    @property
    def fields(self) -> tuple[str, ...]:
        return self.parts[1::2]

    def render(self, facts: Mapping[str, str | None]) -> str | None:
        """The room name for these facts, or None when a named fact is missing."""
        out: list[str] = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                out.append(part)
                continue
            value = facts.get(part)
            if value is None:
                return None
            out.append(value)
        return "".join(out)

    def matches(self, room: str, facts: Mapping[str, str | None]) -> bool:
        """Whether a client may join `room` under this pattern."""
        regex: list[str] = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                regex.append("[^:]+".join(re.escape(chunk) for chunk in part.split("*")))
                continue
            value = facts.get(part)
            if value is None:
                return False
            regex.append(re.escape(value))
        return re.fullmatch("".join(regex), room) is not None


def valid_room_name(room: object) -> bool:
    return isinstance(room, str) and 0 < len(room) <= MAX_ROOM_LENGTH and room.isprintable()
