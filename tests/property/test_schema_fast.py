"""The payload policy's fast schema check against jsonschema itself (the reference model).

For any schema built from the common keywords and any JSON value: the fast check says yes only
when `Draft7Validator` finds the value valid; and on values without floats (where Draft 7's
"1.0 is an integer" lives) it agrees with jsonschema exactly, so the fast path is really taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policies.schema_fast import compile_check
from engine.profile.build import load_profile

small_ints = st.integers(-5, 5)
names = st.sampled_from(["a", "b", "c", "task_id"])
scalars = st.one_of(
    st.none(), st.booleans(), small_ints, st.floats(-5, 5, allow_nan=False), st.text(max_size=6)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=12,
)
types = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array"])


def schemas() -> st.SearchStrategy[dict[str, Any]]:
    def leaf() -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {},
            optional={
                "type": st.one_of(types, st.lists(types, min_size=1, max_size=3, unique=True)),
                "maxLength": st.integers(0, 6),
                "minLength": st.integers(0, 3),
                "minimum": small_ints,
                "maximum": small_ints,
                "exclusiveMinimum": small_ints,
                "exclusiveMaximum": st.floats(-5, 5, allow_nan=False),
                "enum": st.lists(st.text(max_size=3), min_size=1, max_size=3),
                "description": st.just("annotation only"),
            },
        )

    return st.recursive(
        leaf(),
        lambda inner: st.fixed_dictionaries(
            {},
            optional={
                "type": types,
                "properties": st.dictionaries(names, inner, max_size=3),
                "required": st.lists(names, max_size=2, unique=True),
                "additionalProperties": st.booleans(),
                "items": inner,
                "maxItems": st.integers(0, 4),
                "minItems": st.integers(0, 2),
                "maxProperties": st.integers(0, 4),
                "minProperties": st.integers(0, 2),
            },
        ),
        max_leaves=6,
    )


def has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(has_float(v) for v in value)
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    return False


@settings(max_examples=1500, deadline=None)
@given(schemas(), values)
def test_a_fast_yes_is_a_jsonschema_yes(schema: dict[str, Any], value: Any) -> None:
    check = compile_check(schema)
    assert check is not None, schema  # the strategy builds only compilable schemas
    valid = jsonschema.Draft7Validator(schema).is_valid(value)
    if check(value):
        assert valid, (schema, value)
    elif not has_float(value):
        assert not valid, (schema, value)  # no float involved: the same answer


def test_other_keywords_are_left_to_jsonschema() -> None:
    for schema in (
        {"pattern": "^a"},
        {"type": "string", "format": "email"},
        {"oneOf": [{"type": "string"}]},
        {"items": [{"type": "string"}]},
        {"enum": [1, 2]},
        {"properties": {"a": {"const": 1}}},
        {"additionalProperties": {"type": "string"}},
    ):
        assert compile_check(schema) is None, schema


def test_the_profile_compiles_a_fast_yes_for_each_simple_event_schema(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_text(
        '[engine]\nname = "fast"\nenvironment = "development"\n\n'
        '[namespaces."/".events.simple]\nschema = { type = "string", maxLength = 4 }\n\n'
        '[namespaces."/".events.patterned]\nschema = { type = "string", pattern = "^a" }\n'
    )
    events = load_profile(path, {}).namespaces["/"].events or {}
    check = events["simple"].schema_check
    assert check is not None
    assert check("abcd")
    assert not check("abcde")
    assert events["patterned"].schema_check is None  # jsonschema alone decides it
