"""`Refusal`: a policy's `Deny` in flight, as an exception the server adapter catches.

The client-visible shape is `{code, message, retry_after_seconds?}`. A refused event carries
it in its ack as `{"error": ...}`, or as an `error` event when no ack was asked for; a refused
connection carries it as `connect_error` data.
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

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
