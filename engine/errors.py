"""Errors the engine reports to people, as opposed to bugs.

A profile mistake is never a traceback: every stage collects `Diagnostic`s and the CLI prints
them one per line, sorted by position, then exits 78 (EX_CONFIG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_CONFIG = 78

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in one profile, located as precisely as we know."""

    file: str
    path: str
    message: str
    line: int | None = None
    col: int | None = None
    expected: str | None = None
    got: str | None = None
    hint: str | None = None
    severity: Severity = "error"

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        text = f"{where}: {self.path}: {self.message}"
        details = []
        if self.expected is not None:
            details.append(f"expected {self.expected}")
        if self.got is not None:
            details.append(f"got {self.got}")
        if details:
            text += f" ({', '.join(details)})"
        if self.hint:
            text += f"; {self.hint}"
        if self.severity == "warning":
            text = text.replace(f"{self.path}: ", f"{self.path}: warning: ", 1)
        return text

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line or 0, self.col or 0, self.path)

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "severity": self.severity,
            "message": self.message,
            "expected": self.expected,
            "got": self.got,
            "hint": self.hint,
            "text": self.render(),
        }


@dataclass(slots=True)
class ProfileError(Exception):
    """Raised when a profile cannot be used; carries every diagnostic found."""

    diagnostics: Sequence[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(d.render() for d in sorted(self.diagnostics, key=Diagnostic.sort_key))
