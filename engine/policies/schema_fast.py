"""A fast yes for the per-event JSON Schemas most profiles declare.

jsonschema's `Draft7Validator.iter_errors` walks its keyword machinery for every event, even for
`{type = "string", maxLength = 4096}`: a few microseconds per event, a measurable share of an
event's cost. `compile_check(schema)` turns a schema made only of the common keywords into a
plain predicate that answers True only when the instance is certainly valid under Draft 7. The
payload policy asks it first and runs jsonschema whenever it does not say True, so every
refusal and its message still come from jsonschema, and a schema with any other keyword is
never compiled (None).

Soundness is the contract (predicate True implies jsonschema valid); the property test
`tests/property/test_schema_fast.py` also checks that it agrees with jsonschema on instances
without floats, so the fast path is actually taken. Floats are left to jsonschema (Draft 7
counts 1.0 as an integer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"title", "description", "$comment", "default", "examples"})
_KEYWORDS = _ANNOTATIONS | {
    "type",
    "maxLength",
    "minLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
}


def _is_number(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, float)


_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def compile_check(schema: Any) -> Check | None:
    """A predicate that is True only for instances valid under `schema`, or None when the
    schema uses anything beyond the common keywords."""
    if schema is True or schema == {}:
        return lambda _: True
    if not isinstance(schema, Mapping) or not set(schema) <= _KEYWORDS:
        return None
    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else kind
        if not isinstance(kinds, list) or not all(k in _TYPES for k in kinds):
            return None
        tests = [_TYPES[k] for k in kinds]
        checks.append(lambda v: any(test(v) for test in tests))
    if not _strings(schema, checks) or not _numbers(schema, checks):
        return None
    if not _objects(schema, checks) or not _arrays(schema, checks):
        return None
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None  # jsonschema's equality (1 == 1.0, True != 1) is its own: leave it
        allowed = frozenset(values)
        checks.append(lambda v: isinstance(v, str) and v in allowed)
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _range(schema: Mapping[str, Any], low: str, high: str) -> tuple[int, float] | None:
    """`(low, high)` of a pair of count keywords (absent: 0, infinity); None if not integers."""
    counts = (schema.get(low), schema.get(high))
    if any(c is not None and not (isinstance(c, int) and not isinstance(c, bool)) for c in counts):
        return None
    return counts[0] or 0, counts[1] if counts[1] is not None else float("inf")


def _bound(schema: Mapping[str, Any], key: str) -> bool:
    return key not in schema or _is_number(schema[key])


def _strings(schema: Mapping[str, Any], checks: list[Check]) -> bool:
    low, high = schema.get("minLength"), schema.get("maxLength")
    for bound in (low, high):
        if bound is not None and not (isinstance(bound, int) and not isinstance(bound, bool)):
            return False
    if low is not None or high is not None:
        lo = low or 0
        hi = high if high is not None else float("inf")
        checks.append(lambda v: not isinstance(v, str) or lo <= len(v) <= hi)
    return True


def _numbers(schema: Mapping[str, Any], checks: list[Check]) -> bool:
    keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    if not all(_bound(schema, k) for k in keys):
        return False
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if any(b is not None for b in (minimum, maximum, above, below)):

        def within(v: Any) -> bool:
            if not _is_number(v):
                return True
            if isinstance(v, float):
                return False  # leave floats to jsonschema
            return (
                (minimum is None or v >= minimum)
                and (maximum is None or v <= maximum)
                and (above is None or v > above)
                and (below is None or v < below)
            )

        checks.append(within)
    return True


def _objects(schema: Mapping[str, Any], checks: list[Check]) -> bool:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    counted = "minProperties" in schema or "maxProperties" in schema
    sizes = _range(schema, "minProperties", "maxProperties")
    if not isinstance(properties, Mapping) or not isinstance(required, list) or sizes is None:
        return False
    if not all(isinstance(r, str) for r in required) or extra not in (True, False):
        return False
    subs: dict[str, Check] = {}
    for name, sub in properties.items():
        check = compile_check(sub)
        if check is None:
            return False
        subs[name] = check
    if not (subs or required or extra is False or counted):
        return True
    needed = tuple(required)
    fewest, most = sizes

    def valid_object(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        if not fewest <= len(v) <= most:
            return False
        for name in needed:
            if name not in v:
                return False
        for key, value in v.items():
            check = subs.get(key)
            if check is None:
                if extra is False:
                    return False
            elif not check(value):
                return False
        return True

    checks.append(valid_object)
    return True


def _arrays(schema: Mapping[str, Any], checks: list[Check]) -> bool:
    items = schema.get("items")
    counted = "minItems" in schema or "maxItems" in schema
    sizes = _range(schema, "minItems", "maxItems")
    if sizes is None:
        return False
    each: Check | None = None
    if items is not None:
        each = compile_check(items)
        if each is None:
            return False  # a tuple of schemas, or an item schema beyond the subset
    if each is None and not counted:
        return True
    fewest, most = sizes

    def valid_array(v: Any) -> bool:
        if not isinstance(v, list):
            return True
        if not fewest <= len(v) <= most:
            return False
        return each is None or all(each(item) for item in v)

    checks.append(valid_array)
    return True
