"""`engine show` and `engine diff`: read resolved profiles, never print a secret.

Like `engine validate`, they need no environment: an unset `${VAR}` without a default is
replaced by a placeholder and named on stderr; `--check-env` makes such a variable an error.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomli_w

from engine.errors import EX_OK
from engine.profile.load import Origin
from engine.profile.locate import KeyPath, format_path
from engine.profile.schema import REDACTED, is_secret, redact
from engine.profile.validate import Resolved, resolve

SECURITY_PREFIXES: tuple[KeyPath, ...] = (
    ("auth",),
    ("security",),
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


def origin_of(resolved: Resolved, path: KeyPath) -> Origin:
    if path in resolved.defaulted or any(path[:i] in resolved.defaulted for i in range(len(path))):
        return Origin("default")
    return resolved.loaded.origin(path)


def _resolve(file: Path, *, check_env: bool) -> Resolved:
    resolved = resolve(file, check_env=check_env, require_env=check_env)
    unset = resolved.loaded.unset_variables
    if unset:
        print(
            f"engine: {resolved.loaded.display}: environment variable"
            f"{'s' * (len(unset) > 1)} {', '.join(unset)} not set: placeholders shown, "
            "config_hash not the deployed one (--check-env requires them)",
            file=sys.stderr,
        )
    return resolved


def show(file: Path, *, origin: bool, check_env: bool = False) -> int:
    resolved = _resolve(file, check_env=check_env)
    data = redact(resolved.data)
    print(f"# resolved profile {resolved.loaded.display} (config_hash {resolved.config_hash})")
    if not origin:
        print(tomli_w.dumps(data), end="")
        return EX_OK
    for path, value in leaves(data):
        text = "{}" if isinstance(value, dict) else toml_value(value)
        print(f"{format_path(path)} = {text}  # {origin_of(resolved, path).describe()}")
    return EX_OK


def security_relevant(path: KeyPath) -> bool:
    if any(path[: len(p)] == p for p in SECURITY_PREFIXES):
        return True
    return len(path) >= 3 and path[0] == "namespaces" and path[2] in SECURITY_NAMESPACE_KEYS


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def diff(old_file: Path, new_file: Path, *, check_env: bool = False) -> int:
    old, new = _resolve(old_file, check_env=check_env), _resolve(new_file, check_env=check_env)
    before, after = dict(leaves(old.data)), dict(leaves(new.data))
    lines: list[tuple[bool, str]] = []
    for path in sorted(set(before) | set(after), key=format_path):
        shown = format_path(path)
        secret = is_secret(path)

        def fmt(value: Any, secret: bool = secret) -> str:
            return REDACTED if secret else toml_value(value)

        if path not in before:
            lines.append((security_relevant(path), f"+ {shown} = {fmt(after[path])}"))
        elif path not in after:
            lines.append((security_relevant(path), f"- {shown} = {fmt(before[path])}"))
        elif _fingerprint(before[path]) != _fingerprint(after[path]):
            note = "  (secret changed)" if secret else ""
            text = f"~ {shown}: {fmt(before[path])} -> {fmt(after[path])}{note}"
            lines.append((security_relevant(path), text))
    print(f"--- {old.loaded.display} (config_hash {old.config_hash})")
    print(f"+++ {new.loaded.display} (config_hash {new.config_hash})")
    if not lines:
        print("no differences")
        return EX_OK
    for title, wanted in (("security-relevant", True), ("other", False)):
        chosen = [text for relevant, text in lines if relevant == wanted]
        if chosen:
            print(f"{title}:")
            for text in chosen:
                print(f"  {text}")
    return EX_OK
