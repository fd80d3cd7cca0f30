"""The one shape in which clients learn they were refused: `{code, message, retry_after_seconds?}`.

A refused connection carries it as `connect_error` data; a refused event carries it in its ack
as `{"error": ...}`, or as an `error` event when no ack was asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Refusal(Exception):
    code: str
    message: str
    retry_after_seconds: float | None = None
    disconnect: bool = False

    def envelope(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after_seconds is not None:
            body["retry_after_seconds"] = math.ceil(self.retry_after_seconds * 1000) / 1000
        return body

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
