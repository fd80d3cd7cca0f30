"""The profile schema has one source: per-section fragments -> resolved schema -> published one.

The published `schema/profile.schema.json` is generated and must be current; editors (Taplo,
the engine of VS Code's Even Better TOML) must accept every shipped and test profile as written
(`${VAR}` included) and flag the invalid corpus's schema-level cases.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.profile import schema
from engine.profile.load import load
from engine.profile.validate import schema_problems

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
CORPUS = ROOT / "tests" / "profiles"
WRITTEN = sorted(
    [
        *PROFILES.glob("*.toml"),
        *(CORPUS / "valid").glob("*.toml"),
        *(ROOT / "bench" / "profiles").glob("*.toml"),
    ]
)
INVALID = sorted((CORPUS / "invalid").glob("*.toml"))


def _taplo() -> str:
    found = shutil.which("taplo", path=str(Path(sys.executable).parent)) or shutil.which("taplo")
    if found is None:
        pytest.fail("the taplo CLI is missing: it is in the `test` extra (pip install taplo)")
    return found


def _taplo_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUST_LOG": "error", "NO_COLOR": "1"}
    return subprocess.run(
        [_taplo(), "check", "--colors", "never", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _schema_level(path: Path) -> bool | None:
    """True: the file's own document fails the schema; False: only later stages reject it;
    None: an editor cannot judge it alone (TOML syntax, or `extends` another file).
    A value that is wrong only once interpolated comes from the environment, not the file."""
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError:
        return None
    if "extends" in document:
        return None
    loaded = load(path, {}, require_env=False)
    return any(bad not in loaded.env_paths for bad, _ in schema_problems(loaded))


def test_published_schema_is_generated_from_the_fragments() -> None:
    published = (ROOT / "schema" / "profile.schema.json").read_text(encoding="utf-8")
    assert published == schema.render_published(), "stale: run scripts/gen-schema"
    assert schema.main(["--check"]) == 0


def test_every_fragment_is_a_section_and_every_section_has_a_fragment() -> None:
    on_disk = {
        str(path.relative_to(ROOT / "engine"))
        for path in (ROOT / "engine").rglob("schema_fragment.json")
    }
    listed = set(schema.SECTIONS.values())
    assert on_disk <= listed, f"fragments not in SECTIONS: {on_disk - listed}"
    for relative in listed:
        fragment = json.loads((ROOT / "engine" / relative).read_text(encoding="utf-8"))
        jsonschema.Draft7Validator.check_schema(fragment)
    assert list(schema.SECTIONS) == sorted(schema.SECTIONS), "keep SECTIONS sorted"
    resolved = schema.profile_schema()
    assert set(resolved["properties"]) == {"extends", *schema.SECTIONS}


def test_both_schemas_are_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(schema.profile_schema())
    jsonschema.Draft7Validator.check_schema(schema.editor_schema())


def _scalar_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _scalar_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _scalar_paths(value, (*path, index))
    else:
        yield path


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: str(p.relative_to(ROOT)))
def test_editor_schema_accepts_interpolation_in_every_value(path: Path) -> None:
    """Any value, as written or replaced by `${VAR}` / `${VAR:-default}`, is accepted."""
    validator = jsonschema.Draft7Validator(schema.editor_schema())
    document = tomllib.loads(path.read_text())
    assert not [e.message for e in validator.iter_errors(document)]
    for leaf in _scalar_paths(document):
        if leaf[0] == "extends" or "schema" in leaf:  # a path; an event's own JSON Schema
            continue
        for text in ("${ENGINE_X}", "${ENGINE_X:-42}"):
            changed = copy.deepcopy(document)
            _set(changed, leaf, text)
            assert not [e.message for e in validator.iter_errors(changed)], (leaf, text)


def test_editor_schema_still_refuses_what_is_not_a_value_nor_an_interpolation() -> None:
    validator = jsonschema.Draft7Validator(schema.editor_schema())
    base = {"engine": {"name": "x", "environment": "production"}}
    refused = [
        {"server": {"port": 70000}},
        {"server": {"port": "eighty"}},
        {"server": {"port": "${PORT}x"}},
        {"server": {"port": "x${PORT}"}},
        {"server": {"port": "${1PORT}"}},
        {"server": {"prot": 80}},
        {"server": {"transports": ["carrier-pigeon"]}},
        {"auth": {"type": "jwt", "jwt": {"secret": "short"}}},
        {"namespaces": {"chat": {}}},
        {"namespaces": {"/": {"auto_join": ["user:{user.name}"]}}},
        {"namespaces": {"/": {"client_join": ["room:{sid"]}}},
        {"engine": {"name": "x", "environment": "staging"}},
    ]
    for extra in refused:
        document = {**base, **extra}
        assert list(validator.iter_errors(document)), extra


def test_taplo_accepts_every_shipped_and_test_profile_with_the_repository_config() -> None:
    result = _taplo_check(*(str(p.relative_to(ROOT)) for p in WRITTEN))
    assert result.returncode == 0, result.stdout + result.stderr


def test_taplo_accepts_them_with_the_published_schema_alone() -> None:
    uri = (ROOT / "schema" / "profile.schema.json").as_uri()
    result = _taplo_check(
        "--no-auto-config", "--schema", uri, *(str(p.relative_to(ROOT)) for p in WRITTEN)
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_taplo_flags_exactly_the_schema_level_cases_of_the_invalid_corpus(path: Path) -> None:
    level = _schema_level(path)
    if level is None:
        pytest.skip("an editor judges neither TOML syntax errors nor `extends` chains alone")
    result = _taplo_check(str(path.relative_to(ROOT)))
    if level:
        assert result.returncode != 0, f"taplo accepted a schema error:\n{result.stderr}"
    else:
        assert result.returncode == 0, f"semantic-only case flagged:\n{result.stderr}"
