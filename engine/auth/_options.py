"""Typed readers for the already-validated ``[auth]`` mappings.

The schema has checked shapes already; these readers keep mypy honest and give a precise
``AuthConfigError`` if a mapping is built by hand. Messages name the key, never the value.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "AuthConfigError",
    "boolean",
    "load_mapping_file",
    "nonempty_str",
    "number",
    "optional_str",
    "read_text",
    "resolve_path",
    "str_list",
    "sub_mapping",
]


class AuthConfigError(ValueError):
    """An ``[auth]`` setting that cannot be built (unreadable file, bad key, ...).

    Messages name the profile key (``auth.jwt.jwks_file: ...``) and never contain secrets.
    """


def _error(message: str) -> AuthConfigError:
    return AuthConfigError(message)


def optional_str(mapping: Mapping[str, object], key: str, path: str) -> str | None:
    """Return ``mapping[key]`` as a string, or ``None`` when absent."""
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _error(f"{path}: expected a string")
    return value


def nonempty_str(mapping: Mapping[str, object], key: str, path: str, default: str) -> str:
    """Return ``mapping[key]`` (or ``default``) as a non-empty string."""
    value = optional_str(mapping, key, path)
    if value is None:
        return default
    if not value:
        raise _error(f"{path}: must not be empty")
    return value


def boolean(mapping: Mapping[str, object], key: str, path: str, *, default: bool) -> bool:
    """Return ``mapping[key]`` (or ``default``) as a bool."""
    value = mapping.get(key, default)
    if not isinstance(value, bool):
        raise _error(f"{path}: expected a boolean")
    return value


def number(
    mapping: Mapping[str, object], key: str, path: str, default: float, *, minimum: float = 0
) -> float:
    """Return ``mapping[key]`` (or ``default``) as a float ``>= minimum``."""
    value = mapping.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(f"{path}: expected a number")
    if value < minimum:
        raise _error(f"{path}: expected a number >= {minimum:g}")
    return float(value)


def str_list(mapping: Mapping[str, object], key: str, path: str, default: list[str]) -> list[str]:
    """Return ``mapping[key]`` (or ``default``) as a list of strings."""
    value = mapping.get(key, default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _error(f"{path}: expected a list of strings")
    return [str(v) for v in value]


def sub_mapping(mapping: Mapping[str, object], key: str, path: str) -> Mapping[str, object]:
    """Return ``mapping[key]`` as a mapping (empty when absent)."""
    value = mapping.get(key, {})
    if not isinstance(value, Mapping):
        raise _error(f"{path}: expected a table")
    return {str(k): v for k, v in value.items()}


def resolve_path(value: str, base_dir: Path | None) -> Path:
    """Resolve a profile path against ``base_dir`` (the profile's directory)."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def read_text(value: str, path: str, base_dir: Path | None) -> str:
    """Read a UTF-8 file named by the profile key ``path``."""
    file = resolve_path(value, base_dir)
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise _error(f"{path}: cannot read {str(file)!r}: {reason}") from None


def load_mapping_file(value: str, path: str, base_dir: Path | None) -> Mapping[str, object]:
    """Load a TOML (``.toml``) or JSON (anything else) file holding one table/object.

    Parse errors are reported by position only: the file may hold secrets.
    """
    text = read_text(value, path, base_dir)
    file = resolve_path(value, base_dir)
    data: object
    try:
        data = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError:
        raise _error(f"{path}: {str(file)!r} is not valid TOML") from None
    except json.JSONDecodeError as exc:
        raise _error(
            f"{path}: {str(file)!r} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise _error(f"{path}: {str(file)!r} must hold a table/object")
    return data
