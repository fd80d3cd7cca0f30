"""`Refusal`: a policy's `Deny` in flight, as an exception the server adapter catches.

A refused event carries it in its ack as `{"error": ...}`, or as an `error` event when no ack was
asked for. A refused connection carries it in the Socket.IO convention, `{"message", "data"}`
(see `connect_error_data`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.policies.codes import CODES
from engine.policies.decision import Deny


@dataclass(slots=True)
class Refusal(Exception):
    code: str
    message: str
    retry_after_seconds: float | None = None
    disconnect: bool = False
    policy: str = ""
    extra: dict[str, object] | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"{self.code!r} is not in the error taxonomy (engine.policies.codes)")

    @classmethod
    def of(cls, deny: Deny) -> Refusal:
        return cls(deny.code, deny.message, deny.retry_after_seconds, deny.disconnect, deny.policy)

    def envelope(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after_seconds is not None:
            body["retry_after_seconds"] = math.ceil(self.retry_after_seconds * 1000) / 1000
        if self.extra:
            body.update(self.extra)
        return body

    def connect_error_data(self) -> dict[str, object]:
        """CONNECT_ERROR data as Node's `next(err)` with `err.data` sends it.

        The JS client builds its `connect_error` error from `message` and `data` only, so the
        envelope goes in `data`: `err.message`, `err.data.code`, `err.data.retry_after_seconds`.
        """
        return {"message": self.message, "data": self.envelope()}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
