"""The one result shape every admission policy returns.

Sharing ``Allow``/``Deny`` lets the server adapter map any refusal onto the same client-visible
envelope (``{"code", "message", "retry_after_seconds"?}``) without knowing which policy spoke.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALLOW", "Allow", "Decision", "Deny"]


@dataclass(frozen=True, slots=True)
class Allow:
    """The request may proceed."""


@dataclass(frozen=True, slots=True)
class Deny:
    """The request is refused; ``code`` is stable for clients, ``message`` is for humans."""

    code: str
    message: str
    retry_after_seconds: float | None = None

    def envelope(self) -> dict[str, object]:
        """The error object clients receive (``connect_error`` data or ack ``error``)."""
        data: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after_seconds is not None:
            data["retry_after_seconds"] = self.retry_after_seconds
        return data


Decision = Allow | Deny

ALLOW = Allow()
