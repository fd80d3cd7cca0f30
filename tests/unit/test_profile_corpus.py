"""The invalid-profile corpus: each file's `# expect:` lines are exactly what it must produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli.inspect import leaves
from engine.cli.validate import check_file
from engine.profile.build import build
from engine.profile.locate import KeyPath
from engine.profile.validate import resolve

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "profiles"
INVALID = sorted((CORPUS / "invalid").glob("*.toml"))
VALID = sorted((CORPUS / "valid").glob("*.toml"))
SHIPPED = sorted((ROOT / "profiles").glob("*.toml"))


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_profile_reports_exactly_its_expected_lines(path: Path) -> None:
    expected = [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]
    assert expected, f"{path} states no '# expect:' line"
    got = [d.render() for d in check_file(path.relative_to(ROOT), check_env=False, environ={})]
    assert got == expected


@pytest.mark.parametrize("path", VALID + SHIPPED, ids=lambda p: p.stem)
def test_valid_profiles_build(path: Path) -> None:
    profile = build(resolve(path.relative_to(ROOT), {}, require_env=False))
    assert profile.engine.name


def test_shipped_profiles_start_with_schema_directive() -> None:
    assert {p.stem for p in SHIPPED} >= {"development", "production", "maintenance"}
    for path in SHIPPED:
        assert path.read_text().splitlines()[0] == "#:schema ../schema/profile.schema.json"


def test_maintenance_extends_production() -> None:
    maintenance = build(resolve(Path("profiles/maintenance.toml"), {}, require_env=False))
    production = build(resolve(Path("profiles/production.toml"), {}, require_env=False))
    assert maintenance.engine.environment == "maintenance"
    assert maintenance.server == production.server
    admin = maintenance.namespaces["/admin"]
    assert admin.events is not None
    assert "maintenance_cancel" in admin.events
    assert maintenance.namespaces["/"] == production.namespaces["/"]


BENCH_APPLICATION: tuple[KeyPath, ...] = (
    ("engine",),
    ("auth", "roles", "user"),
    ("namespaces", "/", "handler"),
    ("namespaces", "/", "require_roles"),
    ("namespaces", "/", "auto_join"),
    ("namespaces", "/", "events", "echo"),
    ("namespaces", "/", "events", "fanout"),
)
BENCH_LIMITS: tuple[KeyPath, ...] = (
    ("security", "rate_limits"),
    ("security", "connections"),
    ("namespaces", "/", "max_connections_per_user"),
)


def test_bench_production_differs_only_in_limits_and_the_bench_app() -> None:
    """The README's production figures are those of profiles/production.toml as shipped."""
    shipped = dict(leaves(resolve(Path("profiles/production.toml"), {}, require_env=False).data))
    bench_path = Path("bench/profiles/production-bench.toml")
    bench = dict(leaves(resolve(bench_path, {}, require_env=False).data))
    for path in sorted(set(shipped) | set(bench), key=str):
        if shipped.get(path) == bench.get(path):
            continue
        if any(path[: len(p)] == p for p in BENCH_APPLICATION):
            continue
        assert any(path[: len(p)] == p for p in BENCH_LIMITS), f"{path} is not a limit"
        if path[-1] == "action":
            continue
        raised = bench[path]
        assert path not in shipped or raised >= shipped[path], f"{path} is lowered"


def test_bench_production_limits_differs_only_in_the_bench_app() -> None:
    """The refusal scenarios run against production.toml's own limits."""
    shipped = dict(leaves(resolve(Path("profiles/production.toml"), {}, require_env=False).data))
    bench_path = Path("bench/profiles/production-limits.toml")
    bench = dict(leaves(resolve(bench_path, {}, require_env=False).data))
    for path in sorted(set(shipped) | set(bench), key=str):
        if shipped.get(path) == bench.get(path):
            continue
        assert any(path[: len(p)] == p for p in BENCH_APPLICATION), f"{path} differs"
