"""The one result shape every policy returns: `Allow` or `Deny`.

A `Deny` names the policy that decided (`policy`), the stable client-visible `code`, a human
`message`, when to retry, whether the session must be closed (`disconnect`) and whether the
refusal counts as a strike towards a ban (`strike`). The guard loops over the policy chain and
reports the deciding policy by name; nothing downstream guesses it back from the code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.policies.codes import CODES

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
    policy: str = ""
    disconnect: bool = False
    strike: bool = False

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"{self.code!r} is not in the error taxonomy (engine.policies.codes)")

    def by(self, policy: str, *, strike: bool | None = None) -> Deny:
        """The same denial attributed to `policy` (pure policies do not know their chain name)."""
        return replace(self, policy=policy, strike=self.strike if strike is None else strike)


Decision = Allow | Deny

ALLOW = Allow()
