"""Turn a loaded profile into a resolved document, or into every diagnostic at once.

Stages: interpolated strings are coerced to their schema type, the user's document is checked
against the JSON Schema (all errors, not the first), defaults are filled, then semantic checks
that JSON Schema cannot express run (`engine.profile.checks`). Messages follow one shape:
`path: what is wrong (expected ..., got ...)` plus a did-you-mean where a near miss exists.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from engine.errors import Diagnostic, ProfileError
from engine.profile import checks
from engine.profile.load import UNSET, Loaded, delete_at, load, set_at
from engine.profile.locate import KeyPath
from engine.profile.schema import (
    REDACTED,
    coerce,
    fill_defaults,
    is_secret,
    profile_schema,
    redact,
    types_at,
)
from engine.rooms import RoomTemplate, TemplateError


@dataclass(slots=True)
class Resolved:
    """A valid profile document with defaults filled, and how it was put together.

    `invalid` is empty for a valid profile. For an invalid one (see `InvalidProfile.partial`)
    it holds the paths whose values failed the schema; they are pruned from `data`, so later
    stages (semantic checks, component builds) can still run on what is left.
    """

    data: dict[str, Any]
    loaded: Loaded
    defaulted: set[KeyPath]
    warnings: list[Diagnostic] = field(default_factory=list)
    invalid: frozenset[KeyPath] = frozenset()

    @property
    def config_hash(self) -> str:
        """Stable hash of the resolved profile; secrets are redacted first so it can be shown."""
        canonical = json.dumps(redact(self.data), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def affected(self, path: KeyPath) -> bool:
        """Whether an invalid value lies at or below `path` (its inputs are not trustworthy)."""
        return any(bad[: len(path)] == path for bad in self.invalid)


class InvalidProfile(ProfileError):
    """A profile with schema or semantic errors; `partial` is what later stages may still read."""

    def __init__(self, diagnostics: list[Diagnostic], partial: Resolved | None) -> None:
        super().__init__(diagnostics)
        self.partial = partial


def resolve(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    check_env: bool = False,
    require_env: bool = True,
) -> Resolved:
    """Load, validate and default-fill a profile; raise `ProfileError` with all diagnostics.

    Schema errors do not stop the semantic checks: values that failed the schema are pruned
    and every check whose inputs are still there runs, so one run reports both kinds.

    :param check_env: also check this machine (handler imports, files).
    :param require_env: an unset `${VAR}` without default is an error; when false (plain
        `engine validate`, `show`, `diff`), a placeholder stands in so the shape can be checked.
    """
    env = os.environ if environ is None else environ
    loaded = load(path, env, require_env=require_env)
    problems, invalid = coerce_interpolated(loaded)
    reported = {d.path for d in problems}
    for bad, diag in schema_problems(loaded):
        if diag.path not in reported:
            problems.append(diag)
            if bad is not None:
                invalid.add(bad)
    reported = {d.path for d in problems}
    loaded.data.pop("extends", None)  # resolved: how it was composed no longer matters
    defaulted = set(fill_defaults(loaded.data))
    data = prune(loaded.data, invalid) if invalid else loaded.data
    found = [
        d
        for d in checks.run(loaded, data, check_env=check_env, partial=bool(problems))
        if d.path not in reported
    ]
    resolved = Resolved(data, loaded, defaulted, invalid=frozenset(invalid))
    if problems or any(d.severity == "error" for d in found):
        raise InvalidProfile([*problems, *found], resolved)
    resolved.warnings = found
    return resolved


def prune(data: dict[str, Any], invalid: set[KeyPath]) -> dict[str, Any]:
    """A copy of `data` without the values at `invalid` paths (a whole array for a bad item)."""
    pruned = copy.deepcopy(data)
    for path in sorted(invalid, key=len):
        while path and isinstance(path[-1], int):
            path = path[:-1]  # arrays are replaced whole: drop the array, not shift its items
        node: Any = pruned
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if path and isinstance(node, dict):
            node.pop(path[-1], None)
    return pruned


def coerce_interpolated(loaded: Loaded) -> tuple[list[Diagnostic], set[KeyPath]]:
    problems = []
    invalid: set[KeyPath] = set()
    for path, variables in loaded.env_paths.items():
        node: Any = loaded.data
        for key in path:
            node = node[key]
        value, wanted = coerce(node, types_at(path))
        if wanted and isinstance(path[-1], str) and any(n.endswith(UNSET) for n in variables):
            # a placeholder for an unset variable (validate/show without the environment):
            # the shape is what matters, so the key's default stands in for it
            delete_at(loaded.data, path)
        elif wanted:
            shown = REDACTED if is_secret(path) else repr(node)
            problems.append(
                loaded.diagnostic(
                    path,
                    f"value from environment variable {', '.join(variables)} is not "
                    f"{'an' if wanted[0] in 'aeiou' else 'a'} {wanted}",
                    expected=wanted,
                    got=shown,
                )
            )
            invalid.add(path)
        else:
            set_at(loaded.data, path, value)
    return problems, invalid


def schema_diagnostics(loaded: Loaded) -> list[Diagnostic]:
    return [diag for _, diag in schema_problems(loaded)]


def schema_problems(loaded: Loaded) -> list[tuple[KeyPath | None, Diagnostic]]:
    """Every schema error, each with the path of the offending value (None: a missing key)."""
    validator = jsonschema.Draft7Validator(profile_schema())
    out: list[tuple[KeyPath | None, Diagnostic]] = []
    for error in validator.iter_errors(loaded.data):
        error = _unwrap(error)
        if _stands_in(error.instance) and error.validator in _PLACEHOLDER_BLIND:
            continue  # an unset variable's placeholder: only the value's type is checked
        out.extend(_describe(loaded, error))
    return out


# what a placeholder cannot satisfy but a real value of the right type may
_PLACEHOLDER_BLIND = frozenset({"pattern", "format", "minLength", "maxLength", "enum", "const"})


def _stands_in(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("<unset:")


def _unwrap(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf, report the branch that got furthest, not 'is not valid under any'."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        typed = [e for e in error.context if e.validator != "type"]
        error = best_match(typed or error.context)
    return error


def _short(value: Any, path: KeyPath) -> str:
    if is_secret(path):
        return REDACTED
    text = (
        json.dumps(value, ensure_ascii=False, default=str)
        if not isinstance(value, str)
        else repr(value)
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _room_problem(text: str, *, wildcard: bool) -> str:
    try:
        RoomTemplate.parse(text, wildcard=wildcard)
    except TemplateError as exc:
        return str(exc)
    return "invalid format"


# Pattern-checked strings whose schema node has a `title` get a message of their own
# (editors show the pattern; people read this): title -> value -> (message, expected).
_PATTERN_MESSAGES: dict[str, Callable[[str], tuple[str, str | None]]] = {
    "namespace name": lambda value: (
        "invalid namespace name",
        "'/' or '/segment[/segment...]' of letters, digits, _ - . ~",
    ),
    "room template": lambda value: (f"invalid room {_room_problem(value, wildcard=False)}", None),
    "room pattern": lambda value: (f"invalid room {_room_problem(value, wildcard=True)}", None),
}


def _describe(loaded: Loaded, error: ValidationError) -> list[tuple[KeyPath | None, Diagnostic]]:
    path: KeyPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    if "propertyNames" in error.schema_path:
        path = (*path, str(value))
    kind = error.validator
    limit: Any = error.validator_value

    def one(message: str, **extra: Any) -> list[tuple[KeyPath | None, Diagnostic]]:
        return [(path, loaded.diagnostic(path, message, **extra))]

    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        return [
            (
                (*path, key),
                loaded.diagnostic(
                    (*path, key),
                    "unknown key",
                    expected="one of: " + ", ".join(allowed),
                    got=repr(key),
                    hint=did_you_mean(key, allowed),
                ),
            )
            for key in sorted(set(value) - set(allowed))
        ]
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        return [(None, loaded.diagnostic(path, f"missing required key '{missing}'"))]
    if kind == "type":
        wanted = limit
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        wanted_text = wanted_text.replace("object", "table")
        return one(
            "wrong type", expected=wanted_text, got=f"{_json_type(value)} {_short(value, path)}"
        )
    if kind == "enum":
        choices = [str(c) for c in limit]
        return one(
            "not an allowed value",
            expected="one of: " + ", ".join(repr(c) for c in choices),
            got=_short(value, path),
            hint=did_you_mean(str(value), choices),
        )
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        noun = "integer" if schema.get("type") == "integer" else "number"
        return one(
            "out of range", expected=f"{noun} {bounds[kind]} {limit}", got=_short(value, path)
        )
    titled = _PATTERN_MESSAGES.get(str(schema.get("title")))
    if kind == "pattern" and titled and isinstance(value, str):
        message, expected = titled(value)
        if expected is None:  # the message already quotes what is wrong
            return one(message)
        return one(message, expected=expected, got=_short(value, path))
    simple = {
        "minLength": ("too short", f"at least {limit} characters"),
        "maxLength": ("too long", f"at most {limit} characters"),
        "minItems": ("too few items", f"at least {limit} items"),
        "maxItems": ("too many items", f"at most {limit} items"),
        "uniqueItems": ("duplicate items", "unique items"),
        "pattern": ("invalid format", f"a string matching {limit}"),
    }
    if kind == "pattern" and schema.get("examples"):
        examples = " or ".join(repr(e) for e in schema["examples"])
        simple["pattern"] = ("invalid format", f"a string like {examples}")
    if kind in simple:
        message, expected = simple[kind]
        return one(message, expected=expected, got=_short(value, path))
    return one(error.message if not is_secret(path) else "invalid value")


__all__ = ["InvalidProfile", "Resolved", "did_you_mean", "resolve"]
