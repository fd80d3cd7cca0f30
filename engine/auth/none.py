"""``type = "none"``: every connection is anonymous."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from engine.auth.base import ANONYMOUS, AUTHENTICATORS, AuthFailure, Credentials, Identity

__all__ = ["NoneAuthenticator", "NoneOptions"]


@dataclass(frozen=True, slots=True)
class NoneOptions:
    """``[auth.none]`` has no options."""

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> NoneOptions:
        """Build from the merged ``[auth]`` mapping (nothing to read)."""
        del mapping
        return cls()


@AUTHENTICATORS.register("none")
class NoneAuthenticator:
    """Accepts every connection as :data:`~engine.auth.base.ANONYMOUS`."""

    EXAMPLE: ClassVar[str] = '[auth]\ntype = "none"\n'

    def __init__(self, options: NoneOptions | None = None) -> None:
        self.options = options if options is not None else NoneOptions()

    @classmethod
    def from_profile(
        cls, mapping: Mapping[str, object], *, base_dir: Path | None = None
    ) -> NoneAuthenticator:
        """Build from the merged ``[auth]`` mapping."""
        del base_dir
        return cls(NoneOptions.from_profile(mapping))

    def authenticate(self, credentials: Credentials, now: float) -> Identity | AuthFailure:
        """Return :data:`~engine.auth.base.ANONYMOUS`, whatever was presented."""
        del credentials, now
        return ANONYMOUS
