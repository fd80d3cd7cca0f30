"""Turn a loaded profile into a resolved document, or into every diagnostic at once.

Stages: interpolated strings are coerced to their schema type, the user's document is checked
against the JSON Schema (all errors, not the first), defaults are filled, then semantic checks
that JSON Schema cannot express run (`engine.profile.checks`). Messages follow one shape:
`path: what is wrong (expected ..., got ...)` plus a did-you-mean where a near miss exists.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from engine.errors import Diagnostic, ProfileError
from engine.profile import checks
from engine.profile.load import Loaded, load, set_at
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


@dataclass(slots=True)
class Resolved:
    """A valid profile document with defaults filled, and how it was put together."""

    data: dict[str, Any]
    loaded: Loaded
    defaulted: set[KeyPath]
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def config_hash(self) -> str:
        """Stable hash of the resolved profile; secrets are redacted first so it can be shown."""
        canonical = json.dumps(redact(self.data), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resolve(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    check_env: bool = False,
    require_env: bool = True,
) -> Resolved:
    """Load, validate and default-fill a profile; raise `ProfileError` with all diagnostics.

    :param check_env: also check this machine (handler imports, files).
    :param require_env: an unset `${VAR}` without default is an error; when false (plain
        `engine validate`), a placeholder stands in so the shape can still be checked.
    """
    env = os.environ if environ is None else environ
    loaded = load(path, env, require_env=require_env)
    problems = coerce_interpolated(loaded)
    reported = {d.path for d in problems}
    problems += [d for d in schema_diagnostics(loaded) if d.path not in reported]
    if problems:
        raise ProfileError(problems)
    loaded.data.pop("extends", None)  # resolved: how it was composed no longer matters
    defaulted = set(fill_defaults(loaded.data))
    found = checks.run(loaded, check_env=check_env)
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise ProfileError(found)
    return Resolved(loaded.data, loaded, defaulted, [d for d in found if d.severity == "warning"])


def coerce_interpolated(loaded: Loaded) -> list[Diagnostic]:
    problems = []
    for path, variables in loaded.env_paths.items():
        node: Any = loaded.data
        for key in path:
            node = node[key]
        value, wanted = coerce(node, types_at(path))
        if wanted:
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
        else:
            set_at(loaded.data, path, value)
    return problems


def schema_diagnostics(loaded: Loaded) -> list[Diagnostic]:
    validator = jsonschema.Draft7Validator(profile_schema())
    out: list[Diagnostic] = []
    for error in validator.iter_errors(loaded.data):
        out.extend(_describe(loaded, _unwrap(error)))
    return out


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


def _describe(loaded: Loaded, error: ValidationError) -> list[Diagnostic]:
    path: KeyPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    if "propertyNames" in error.schema_path:
        path = (*path, str(value))
    kind = error.validator
    limit: Any = error.validator_value
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        out = []
        for key in sorted(set(value) - set(allowed)):
            out.append(
                loaded.diagnostic(
                    (*path, key),
                    "unknown key",
                    expected="one of: " + ", ".join(allowed),
                    got=repr(key),
                    hint=did_you_mean(key, allowed),
                )
            )
        return out
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        return [loaded.diagnostic(path, f"missing required key '{missing}'")]
    if kind == "type":
        wanted = limit
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        wanted_text = wanted_text.replace("object", "table")
        return [
            loaded.diagnostic(
                path,
                "wrong type",
                expected=wanted_text,
                got=f"{_json_type(value)} {_short(value, path)}",
            )
        ]
    if kind == "enum":
        choices = [str(c) for c in limit]
        return [
            loaded.diagnostic(
                path,
                "not an allowed value",
                expected="one of: " + ", ".join(repr(c) for c in choices),
                got=_short(value, path),
                hint=did_you_mean(str(value), choices),
            )
        ]
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        noun = "integer" if schema.get("type") == "integer" else "number"
        return [
            loaded.diagnostic(
                path,
                "out of range",
                expected=f"{noun} {bounds[kind]} {limit}",
                got=_short(value, path),
            )
        ]
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
        return [loaded.diagnostic(path, message, expected=expected, got=_short(value, path))]
    return [loaded.diagnostic(path, error.message if not is_secret(path) else "invalid value")]


__all__ = ["Resolved", "did_you_mean", "resolve"]
