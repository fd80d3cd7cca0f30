"""``type = "token"``: static bearer tokens mapped to a user id and roles.

Tokens come from ``tokens_file`` (a TOML or JSON table ``token -> {user_id, roles}``) and/or
the inline ``tokens`` list (``[{token = "${SVC_TOKEN}", user_id = "svc", roles = [...]}]``).
Only SHA-256 digests are kept in memory. Lookup compares the presented token's digest with
every entry using :func:`hmac.compare_digest` and never exits early, so timing does not tell
which entry (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from engine.auth import _options as opt
from engine.auth.base import (
    AUTHENTICATORS,
    AuthConfigError,
    AuthFailure,
    CommonOptions,
    Credentials,
    Identity,
    extract_credential,
)

__all__ = [
    "TokenAuthenticator",
    "TokenEntry",
    "TokenOptions",
    "constant_time_lookup",
    "token_digest",
]

INVALID_TOKEN = AuthFailure("invalid token")

_ENTRY_KEYS = frozenset({"user_id", "roles"})


def token_digest(token: str) -> bytes:
    """Return the SHA-256 digest of ``token`` (UTF-8)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def constant_time_lookup(
    digest: bytes,
    digests: Sequence[bytes],
    compare: Callable[[bytes, bytes], bool] = hmac.compare_digest,
) -> int | None:
    """Return the index of ``digest`` in ``digests``, comparing against every entry.

    :param digest: the presented token's digest.
    :param digests: the configured digests (all the same length, no duplicates).
    :param compare: the constant-time comparison (a parameter so tests can count calls).
    """
    found: int | None = None
    for index, candidate in enumerate(digests):
        matched = compare(digest, candidate)
        found = index if matched else found
    return found


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One configured token, kept as a digest.

    :param digest: SHA-256 of the token.
    :param user_id: the user the token authenticates.
    :param roles: the user's roles.
    """

    digest: bytes
    user_id: str
    roles: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"TokenEntry(user_id={self.user_id!r}, roles={sorted(self.roles)!r})"


def _entry(token: object, spec: object, where: str) -> TokenEntry:
    if not isinstance(token, str) or not token:
        raise AuthConfigError(f"{where}: token must be a non-empty string")
    if not isinstance(spec, Mapping):
        raise AuthConfigError(f"{where}: expected a table with user_id and roles")
    unknown = sorted(str(k) for k in spec if k not in _ENTRY_KEYS)
    if unknown:
        raise AuthConfigError(f"{where}: unknown key {unknown[0]!r}; expected user_id, roles")
    user_id = spec.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise AuthConfigError(f"{where}: user_id must be a non-empty string")
    roles = spec.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise AuthConfigError(f"{where}: roles must be a list of non-empty strings")
    return TokenEntry(digest=token_digest(token), user_id=user_id, roles=frozenset(roles))


@dataclass(frozen=True, slots=True)
class TokenOptions:
    """``[auth.token]`` options.

    :param entries: the configured tokens (digests only).
    :param common: the ``[auth]`` common keys.
    """

    entries: tuple[TokenEntry, ...]
    common: CommonOptions = field(default_factory=CommonOptions)

    @classmethod
    def from_profile(
        cls, mapping: Mapping[str, object], *, base_dir: Path | None = None
    ) -> TokenOptions:
        """Build from the merged ``[auth]`` mapping; reads ``tokens_file`` if set.

        :raises AuthConfigError: unreadable file, malformed entry, duplicate or no tokens.
        """
        entries: list[TokenEntry] = []
        tokens_file = opt.optional_str(mapping, "tokens_file", "auth.token.tokens_file")
        if tokens_file is not None:
            table = opt.load_mapping_file(tokens_file, "auth.token.tokens_file", base_dir)
            for number, (token, spec) in enumerate(table.items(), start=1):
                entries.append(_entry(token, spec, f"auth.token.tokens_file: entry #{number}"))
        inline = mapping.get("tokens", [])
        if not isinstance(inline, list | tuple):
            raise AuthConfigError("auth.token.tokens: expected a list of tables")
        for index, item in enumerate(inline):
            where = f"auth.token.tokens[{index}]"
            if not isinstance(item, Mapping):
                raise AuthConfigError(f"{where}: expected a table with token, user_id, roles")
            spec = {k: v for k, v in item.items() if k != "token"}
            entries.append(_entry(item.get("token"), spec, where))
        if not entries:
            raise AuthConfigError("auth.token: no tokens configured; set tokens_file or tokens")
        if len({e.digest for e in entries}) != len(entries):
            raise AuthConfigError("auth.token: the same token is configured more than once")
        return cls(entries=tuple(entries), common=CommonOptions.from_profile(mapping))


@AUTHENTICATORS.register("token")
class TokenAuthenticator:
    """Authenticates static bearer tokens in constant time."""

    EXAMPLE: ClassVar[str] = (
        "[auth]\n"
        'type = "token"\n'
        'sources = ["auth", "header"]\n'
        "\n"
        "[auth.token]\n"
        'tokens = [{ token = "${SERVICE_TOKEN}", user_id = "service", roles = ["admin"] }]\n'
    )

    def __init__(self, options: TokenOptions) -> None:
        self.options = options
        self._digests = tuple(entry.digest for entry in options.entries)

    @classmethod
    def from_profile(
        cls, mapping: Mapping[str, object], *, base_dir: Path | None = None
    ) -> TokenAuthenticator:
        """Build from the merged ``[auth]`` mapping."""
        return cls(TokenOptions.from_profile(mapping, base_dir=base_dir))

    def authenticate(self, credentials: Credentials, now: float) -> Identity | AuthFailure:
        """Match the presented token against every configured token."""
        del now
        common = self.options.common
        found = extract_credential(
            credentials, common.sources, common.payload_key, common.cookie_name
        )
        if found is None:
            return common.missing()
        index = constant_time_lookup(token_digest(found.value), self._digests)
        if index is None:
            return INVALID_TOKEN
        entry = self.options.entries[index]
        return Identity(
            user_id=entry.user_id,
            roles=entry.roles,
            via="token",
            cookie_authenticated=found.from_cookie,
        )
