"""The profile's JSON Schema as data: where it lives, what a path's type is, defaults, secrets.

The schema file is the single description of the profile: editors read it through the
`#:schema` line, the validator checks against it, and this module derives defaults, type
coercion of interpolated values and the set of secret fields (`"writeOnly": true`) from it.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from engine.profile.locate import KeyPath

_PACKAGE = Path(__file__).resolve().parents[1]
REDACTED = "<redacted>"


def data_file(name: str, repo_dir: str) -> Path:
    """A file shipped in the wheel under engine/_data, or found in the source checkout."""
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.is_file() else _PACKAGE.parent / repo_dir / name


@functools.cache
def profile_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(data_file("profile.schema.json", "schema").read_text())
    return loaded


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref: str = schema["$ref"]
        node: Any = root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _branches(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _deref(schema, root)
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if alternatives:
        return [b for alt in alternatives for b in _branches(alt, root)]
    return [schema]


def schema_at(path: KeyPath, root: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All subschemas that may describe the value at `path` (several under oneOf)."""
    root = root or profile_schema()
    current = [root]
    for key in path:
        following: list[dict[str, Any]] = []
        for schema in current:
            for branch in _branches(schema, root):
                if isinstance(key, int):
                    items = branch.get("items")
                    if isinstance(items, dict):
                        following.append(items)
                    continue
                props = branch.get("properties", {})
                if key in props:
                    following.append(props[key])
                elif isinstance(branch.get("additionalProperties"), dict):
                    following.append(branch["additionalProperties"])
        current = following
    return [b for schema in current for b in _branches(schema, root)]


def types_at(path: KeyPath) -> set[str]:
    found: set[str] = set()
    for schema in schema_at(path):
        kind = schema.get("type")
        if isinstance(kind, str):
            found.add(kind)
        elif isinstance(kind, list):
            found.update(kind)
    return found


def is_secret(path: KeyPath) -> bool:
    return any(schema.get("writeOnly") for schema in schema_at(path))


def coerce(text: str, types: set[str]) -> tuple[Any, str | None]:
    """Convert an interpolated string to the schema's scalar type; (value, error)."""
    if not types or "string" in types:
        return text, None
    stripped = text.strip()
    if "boolean" in types:
        lowered = stripped.lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True, None
        if lowered in {"false", "0", "no", "off"}:
            return False, None
        if types == {"boolean"}:
            return text, "boolean (true/false)"
    if "integer" in types:
        try:
            return int(stripped, 10), None
        except ValueError:
            if "number" not in types:
                return text, "integer"
    if "number" in types:
        try:
            value = float(stripped)
        except ValueError:
            return text, "number"
        if value != value or value in (float("inf"), float("-inf")):
            return text, "finite number"
        return (int(value) if value.is_integer() and "." not in stripped else value), None
    return text, None


def fill_defaults(data: dict[str, Any], root: dict[str, Any] | None = None) -> list[KeyPath]:
    """Fill schema defaults into `data` in place; returns the paths that were filled."""
    root = root or profile_schema()
    filled: list[KeyPath] = []

    def walk(node: Any, schema: dict[str, Any], path: KeyPath) -> None:
        for branch in _branches(schema, root):
            if branch.get("type") == "object" and isinstance(node, dict):
                for key, sub in branch.get("properties", {}).items():
                    sub = _deref(sub, root)
                    if key not in node and "default" in sub:
                        node[key] = copy.deepcopy(sub["default"])
                        filled.append((*path, key))
                        _mark_all(node[key], (*path, key), filled)
                    if key in node:
                        walk(node[key], sub, (*path, key))
                extra = branch.get("additionalProperties")
                if isinstance(extra, dict):
                    for key, value in node.items():
                        if key not in branch.get("properties", {}):
                            walk(value, extra, (*path, key))
            elif branch.get("type") == "array" and isinstance(node, list):
                items = branch.get("items")
                if isinstance(items, dict):
                    for index, value in enumerate(node):
                        walk(value, items, (*path, index))

    walk(data, root, ())
    return filled


def _mark_all(node: Any, path: KeyPath, out: list[KeyPath]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*path, key))
            _mark_all(value, (*path, key), out)


def redact(data: Any, path: KeyPath = ()) -> Any:
    """A copy of `data` with every secret field replaced by a marker."""
    if isinstance(data, dict):
        return {
            key: (REDACTED if is_secret((*path, key)) else redact(value, (*path, key)))
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact(value, (*path, index)) for index, value in enumerate(data)]
    return data
