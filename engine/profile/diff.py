"""What changed between two resolved profiles, secrets never shown.

Shared by `engine diff` and the engine's hot reload, which classifies each change as live or
restart-required. A profile keeps only the *fingerprints* of its leaves (`Snapshot`), so a
running engine can diff against a new file without holding the raw document.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from engine.profile.locate import KeyPath, format_path
from engine.profile.schema import REDACTED, is_secret

SECURITY_PREFIXES: tuple[KeyPath, ...] = (
    ("auth",),
    ("security",),
    ("admin",),
    ("maintenance",),
    ("server", "allowed_origins"),
    ("server", "trusted_proxies"),
    ("server", "transports"),
    ("server", "max_payload_bytes"),
    ("server", "tls_cert_file"),
    ("server", "tls_key_file"),
    ("server", "tls_ca_file"),
    ("server", "tls_key_password"),
    ("server", "host"),
    ("monitoring", "dashboard"),
    ("monitoring", "admin_ui"),
)
SECURITY_NAMESPACE_KEYS = frozenset(
    {
        "events",
        "client_join",
        "require_roles",
        "require_permissions",
        "max_connections_per_user",
        "handler",
    }
)


def leaves(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Scalars and arrays (arrays are replaced whole, so they are leaves too)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, node


def toml_value(value: Any) -> str:
    """One value as inline TOML, arrays on one line."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{format_path((k,))} = {toml_value(v)}" for k, v in value.items())
            + " }"
        )
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Leaf:
    fingerprint: str
    shown: str  # TOML text, or the redaction marker for secrets


Snapshot = Mapping[KeyPath, Leaf]


def snapshot(data: Mapping[str, Any]) -> dict[KeyPath, Leaf]:
    return {
        path: Leaf(fingerprint(value), REDACTED if is_secret(path) else toml_value(value))
        for path, value in leaves(dict(data))
    }


def security_relevant(path: KeyPath) -> bool:
    if any(path[: len(p)] == p for p in SECURITY_PREFIXES):
        return True
    return len(path) >= 3 and path[0] == "namespaces" and path[2] in SECURITY_NAMESPACE_KEYS


@dataclass(frozen=True, slots=True)
class Change:
    path: KeyPath
    kind: str  # "+", "-", "~"
    before: str | None
    after: str | None
    secret: bool

    @property
    def key(self) -> str:
        return format_path(self.path)

    @property
    def security(self) -> bool:
        return security_relevant(self.path)

    def render(self) -> str:
        if self.kind == "+":
            return f"+ {self.key} = {self.after}"
        if self.kind == "-":
            return f"- {self.key} = {self.before}"
        note = "  (secret changed)" if self.secret else ""
        return f"~ {self.key}: {self.before} -> {self.after}{note}"


def changes(before: Snapshot, after: Snapshot) -> list[Change]:
    found = []
    for path in sorted(set(before) | set(after), key=format_path):
        old, new = before.get(path), after.get(path)
        secret = is_secret(path)
        if old is None and new is not None:
            found.append(Change(path, "+", None, new.shown, secret))
        elif new is None and old is not None:
            found.append(Change(path, "-", old.shown, None, secret))
        elif old is not None and new is not None and old.fingerprint != new.fingerprint:
            found.append(Change(path, "~", old.shown, new.shown, secret))
    return found
