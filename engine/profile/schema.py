"""The profile's JSON Schema: assembled from one fragment per section, and its editor form.

Single source: every top-level section of a profile is described by one JSON Schema fragment
that lives next to the package owning the section (`SECTIONS`). From these fragments come

- the *resolved* schema (`profile_schema()`), which the engine validates profiles against after
  `${VAR}` interpolation, and from which defaults, the type coercion of interpolated values and
  the set of secret fields (`"writeOnly": true`) are derived;
- the *published* schema `schema/profile.schema.json` (`editor_schema()`), which editors (Taplo,
  VS Code's Even Better TOML) read through each profile's `#:schema` line. Editors see the value
  as written, so every leaf also accepts a whole-value interpolation string (`${VAR}`,
  `${VAR:-default}`). It is generated: `scripts/gen-schema` (`python -m engine.profile.schema
  --write`) rewrites it and a test fails when it is stale.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.profile.locate import KeyPath

_PACKAGE = Path(__file__).resolve().parents[1]
REDACTED = "<redacted>"

# One line per top-level section: its key and its fragment, relative to the `engine` package.
# Keep the lines sorted. A fragment may carry `definitions` (hoisted into the assembled schema;
# `$ref` them as `#/definitions/<name>`); `sections/root.json` holds the document-level keys
# and the definitions several sections share.
SECTIONS: dict[str, str] = {
    "admin": "profile/sections/admin.json",
    "auth": "auth/schema_fragment.json",
    "cluster": "cluster/schema_fragment.json",
    "engine": "profile/sections/engine.json",
    "errors": "profile/sections/errors.json",
    "maintenance": "profile/sections/maintenance.json",
    "monitoring": "monitoring/schema_fragment.json",
    "namespaces": "profile/sections/namespaces.json",
    "progress": "progress/schema_fragment.json",
    "publish": "profile/sections/publish.json",
    "security": "profile/sections/security.json",
    "server": "profile/sections/server.json",
}
ROOT_FRAGMENT = "profile/sections/root.json"
PUBLISHED = _PACKAGE.parent / "schema" / "profile.schema.json"

INTERPOLATION_PATTERN = r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"
INTERPOLATION: dict[str, Any] = {
    "description": "The whole value from an environment variable: `${VAR}` or "
    "`${VAR:-default}`, converted to the key's type when the profile is loaded.",
    "type": "string",
    "pattern": INTERPOLATION_PATTERN,
}
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
# kept on the outside of a wrapped leaf, where editors look for hover text and completions
_ANNOTATIONS = ("title", "description", "default", "examples", "writeOnly")


def data_file(name: str, repo_dir: str) -> Path:
    """A file shipped in the wheel under engine/_data, or found in the source checkout."""
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.is_file() else _PACKAGE.parent / repo_dir / name


def _read_fragment(relative: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_PACKAGE / relative).read_text(encoding="utf-8"))
    loaded.pop("$schema", None)  # fragments may say which draft they are, for their own tests
    return loaded


def assemble(sections: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved profile schema, put together from the root and one fragment per section."""
    root = _read_fragment(ROOT_FRAGMENT)
    root["$schema"] = "http://json-schema.org/draft-07/schema#"
    definitions: dict[str, Any] = root.setdefault("definitions", {})
    properties: dict[str, Any] = root.setdefault("properties", {})
    for name, relative in (SECTIONS if sections is None else sections).items():
        fragment = _read_fragment(relative)
        fragment.pop("title", None)
        for key, definition in fragment.pop("definitions", {}).items():
            if key in definitions and definitions[key] != definition:
                raise ValueError(f"{relative}: definition '{key}' differs from another one")
            definitions[key] = definition
        if name in properties:
            raise ValueError(f"{relative}: section '{name}' is defined twice")
        properties[name] = fragment
    first = ("$schema", "$id", "title", "description")
    ordered: dict[str, Any] = {k: root[k] for k in first if k in root}
    ordered.update({k: v for k, v in root.items() if k not in ordered})
    return ordered


@functools.cache
def profile_schema() -> dict[str, Any]:
    """The resolved schema the engine validates interpolated, typed values against."""
    return assemble()


def _is_leaf(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind or ())
    if kinds:
        return kinds <= _SCALARS
    return "enum" in node or "const" in node


def _constrained(node: dict[str, Any]) -> bool:
    """Whether some string would be refused: only then does interpolation need its own branch."""
    return node.get("type") != "string" or bool(set(node) - {*_ANNOTATIONS, "type"})


def _editor(node: Any, root: dict[str, Any]) -> Any:
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in ("properties", "patternProperties", "definitions"):
        if isinstance(node.get(key), dict):
            out[key] = {k: _editor(v, root) for k, v in node[key].items()}
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            out[key] = _editor(node[key], root)
    if isinstance(node.get("propertyNames"), dict):
        out["propertyNames"] = _deref(node["propertyNames"], root)  # keys are never interpolated
    for key in ("oneOf", "anyOf"):
        if key in node:
            # interpolation may make several branches match: any of them will do for an editor
            out.pop(key)
            out["anyOf"] = [_editor(branch, root) for branch in node[key]]
    if _is_leaf(node) and _constrained(node):
        outer = {key: node[key] for key in _ANNOTATIONS if key in node}
        inner = {key: value for key, value in node.items() if key not in _ANNOTATIONS}
        outer["anyOf"] = [inner, {"$ref": "#/definitions/interpolation"}]
        return outer
    return out


def editor_schema() -> dict[str, Any]:
    """The published schema: the resolved one, each leaf also accepting `${VAR}`."""
    resolved = copy.deepcopy(profile_schema())
    published: dict[str, Any] = _editor(resolved, resolved)
    published["$comment"] = (
        "Generated from engine/profile/sections/*.json and engine/*/schema_fragment.json by "
        "scripts/gen-schema; do not edit."
    )
    published["definitions"]["interpolation"] = INTERPOLATION
    return published


def render_published() -> str:
    return json.dumps(editor_schema(), indent=2, ensure_ascii=False) + "\n"


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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.profile.schema --write | --check`: (re)generate the published schema."""
    parser = argparse.ArgumentParser(prog="python -m engine.profile.schema")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help=f"rewrite {PUBLISHED.name}")
    group.add_argument("--check", action="store_true", help="exit 1 when it is stale")
    group.add_argument("--resolved", action="store_true", help="print the resolved schema")
    args = parser.parse_args(argv)
    if args.resolved:
        print(json.dumps(profile_schema(), indent=2, ensure_ascii=False))
        return 0
    text = render_published()
    current = PUBLISHED.read_text(encoding="utf-8") if PUBLISHED.is_file() else ""
    if args.check:
        if current != text:
            print(f"{PUBLISHED} is stale: run scripts/gen-schema", file=sys.stderr)
            return 1
        return 0
    if current != text:
        PUBLISHED.write_text(text, encoding="utf-8")
        print(f"wrote {PUBLISHED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
