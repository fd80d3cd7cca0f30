"""`engine show` and `engine diff`: read resolved profiles, never print a secret.

Like `engine validate`, they need no environment: an unset `${VAR}` without a default is
replaced by a placeholder and named on stderr; `--check-env` makes such a variable an error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomli_w

from engine.errors import EX_OK
from engine.profile.diff import changes, leaves, snapshot, toml_value
from engine.profile.load import Origin
from engine.profile.locate import KeyPath, format_path
from engine.profile.schema import redact
from engine.profile.validate import Resolved, resolve


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


def diff(old_file: Path, new_file: Path, *, check_env: bool = False) -> int:
    old, new = _resolve(old_file, check_env=check_env), _resolve(new_file, check_env=check_env)
    lines = [(c.security, c.render()) for c in changes(snapshot(old.data), snapshot(new.data))]
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
