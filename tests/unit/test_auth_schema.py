"""engine/auth/schema_fragment.json: self-documenting, strict, in sync with the registry."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import engine.auth
from engine.auth import AUTHENTICATORS

FRAGMENT = Path(engine.auth.__file__).parent / "schema_fragment.json"
ALLOWED_KEYWORDS = {
    "type",
    "properties",
    "additionalProperties",
    "description",
    "default",
    "enum",
    "minimum",
    "items",
    "required",
    "writeOnly",
    "minLength",
    "minItems",
    "uniqueItems",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FRAGMENT.read_text(encoding="utf-8"))
    return loaded


def _subschemas(node: dict[str, Any], path: str = "auth") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _subschemas(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _subschemas(node["additionalProperties"], f"{path}.<name>")
    if isinstance(node.get("items"), dict):
        yield from _subschemas(node["items"], f"{path}[]")


def test_is_a_valid_draft7_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)


def test_every_node_is_described_and_uses_conservative_keywords(schema: dict[str, Any]) -> None:
    for path, node in _subschemas(schema):
        assert node.get("description"), f"{path}: missing description"
        assert set(node) <= ALLOWED_KEYWORDS, f"{path}: {set(node) - ALLOWED_KEYWORDS}"
        if node.get("type") == "object":
            assert "additionalProperties" in node, f"{path}: additionalProperties unset"
            if "properties" in node:
                assert node["additionalProperties"] is False, path


def test_defaults_validate_against_their_own_schema(schema: dict[str, Any]) -> None:
    for _path, node in _subschemas(schema):
        if "default" in node:
            jsonschema.validate(node["default"], node)


def test_type_enum_matches_registry(schema: dict[str, Any]) -> None:
    assert sorted(schema["properties"]["type"]["enum"]) == list(AUTHENTICATORS.names())
    for name in AUTHENTICATORS.names():
        assert name in schema["properties"], f"no [auth.{name}] sub-table"


def test_secrets_are_write_only(schema: dict[str, Any]) -> None:
    write_only = {path for path, node in _subschemas(schema) if node.get("writeOnly")}
    assert write_only == {
        "auth.token.tokens",
        "auth.token.tokens[].token",
        "auth.jwt.secret",
        "auth.session.secret_key",
        "auth.session.secret_key_fallbacks",
    }


@pytest.mark.parametrize("kind", AUTHENTICATORS.names())
def test_examples_validate(schema: dict[str, Any], kind: str) -> None:
    example = AUTHENTICATORS.get(kind).EXAMPLE.replace("${JWT_SECRET}", "x" * 32)
    jsonschema.validate(tomllib.loads(example)["auth"], schema)


def test_roles_table(schema: dict[str, Any]) -> None:
    auth = {
        "type": "none",
        "roles": {
            "admin": {"permissions": ["chat.*", "admin.kick"], "description": "Operators"},
            "viewer": {},
        },
    }
    jsonschema.validate(auth, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"roles": {"admin": {"permission": []}}}, schema)
