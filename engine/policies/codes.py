"""The one taxonomy of error codes clients and operators see.

Every `Deny` a policy returns, every refusal the transport or a handler produces, and every
notice the lifecycle sends uses a code from `CODES`: its severity (how loudly the engine logs
it) and whether it is `recoverable` (the same client may succeed later without changing
anything: retry, possibly after `retry_after_seconds`) are decided here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Code:
    severity: Severity
    recoverable: bool
    meaning: str


CODES: dict[str, Code] = {
    "unauthorized": Code("warning", False, "no valid credentials for what was asked"),
    "forbidden": Code("warning", False, "authenticated, but not allowed"),
    "denied": Code("warning", False, "the address is deny-listed"),
    "banned": Code("warning", True, "temporarily banned after repeated violations"),
    "rate_limited": Code("info", True, "over a rate limit; retry after retry_after_seconds"),
    "too_many_connections": Code("info", True, "a connection cap is reached"),
    "invalid_payload": Code("warning", False, "the event's payload breaks a limit or schema"),
    "unknown_event": Code("warning", False, "the event is not accepted in this namespace"),
    "invalid_namespace": Code("info", False, "no such namespace"),
    "maintenance": Code("info", True, "the service is under maintenance"),
    "namespace_removed": Code("info", False, "a reload removed the namespace"),
    "server_draining": Code("info", True, "the node is shutting down; reconnect elsewhere"),
    "error_budget_exceeded": Code("warning", True, "too many errors in a short time"),
    "internal": Code("error", True, "a handler failed; see the log by error_id"),
    "unavailable": Code("error", True, "shared policy state is unreachable"),
}


def describe(code: str) -> Code:
    """The taxonomy entry of `code`; KeyError names an undeclared code (a bug, not input)."""
    return CODES[code]
