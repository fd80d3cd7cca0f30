"""Profile laws: round trips, mutation reports, interpolation and `extends` merging."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ProfileError
from engine.profile.build import build
from engine.profile.load import interpolate, merge
from engine.profile.locate import KeyPath, format_path
from engine.profile.schema import redact
from engine.profile.validate import resolve

NAME = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True)
EVENT = st.from_regex(r"[a-z][a-z0-9_.:-]{0,10}", fullmatch=True).filter(
    lambda e: e not in {"connect", "disconnect", "error", "join_room", "leave_room"}
)
NAMESPACE = st.one_of(
    st.just("/"), st.lists(NAME, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
)
ROOM = st.from_regex(r"[a-z][a-z0-9_:]{0,10}", fullmatch=True)
TEMPLATE = st.tuples(ROOM, st.sampled_from(["", ":{sid}", ":{namespace}", ":{user.id}"])).map(
    "".join
)
PATTERN = st.tuples(ROOM, st.sampled_from(["", ":*", ":{sid}", ":*:{user.id}"])).map("".join)
SECONDS = st.floats(min_value=0.5, max_value=100, allow_nan=False).map(lambda f: round(f, 3))


@st.composite
def namespace_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["description"] = draw(st.text(max_size=20))
    events = draw(st.one_of(st.none(), st.lists(EVENT, unique=True, max_size=4)))
    if events is not None:
        if draw(st.booleans()):
            spec["events"] = events
        else:
            spec["events"] = {e: {"description": draw(st.text(max_size=10))} for e in events}
    if draw(st.booleans()):
        spec["auto_join"] = draw(st.lists(TEMPLATE, unique=True, max_size=3))
    if draw(st.booleans()):
        spec["client_join"] = draw(st.lists(PATTERN, unique=True, max_size=3))
    if draw(st.booleans()):
        spec["max_client_rooms"] = draw(st.integers(0, 1000))
    return spec


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid profile document, as a user might write it (many keys left out)."""
    doc: dict[str, Any] = {
        "engine": {
            "name": draw(NAME),
            "environment": draw(st.sampled_from(["development", "production", "maintenance"])),
        }
    }
    server: dict[str, Any] = {}
    interval = draw(SECONDS)
    optional: dict[str, st.SearchStrategy[Any]] = {
        "host": st.sampled_from(["127.0.0.1", "::1", "localhost"]),
        "port": st.integers(0, 65535),
        "transports": st.sampled_from([["polling"], ["websocket"], ["websocket", "polling"]]),
        "ping_interval_seconds": st.just(interval),
        "ping_timeout_seconds": st.floats(0.1, interval).map(lambda f: min(round(f, 3), interval)),
        "max_payload_bytes": st.integers(64, 10**8),
        "allowed_origins": st.sampled_from([[], ["https://a.example"], ["https://*.example.com"]]),
        "compression": st.booleans(),
        "shutdown_grace_seconds": st.floats(0, 60),
        "listen_backlog": st.integers(1, 65535),
        "trusted_proxies": st.sampled_from([[], ["10.0.0.0/8"], ["::1/128", "192.168.0.0/16"]]),
        "log_level": st.sampled_from(["debug", "info", "warning", "error"]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            server[key] = draw(strategy)
    if "ping_timeout_seconds" in server and "ping_interval_seconds" not in server:
        server["ping_timeout_seconds"] = min(server["ping_timeout_seconds"], 25)
    if "ping_interval_seconds" in server and "ping_timeout_seconds" not in server:
        server["ping_timeout_seconds"] = min(20, interval)
    if server:
        doc["server"] = server
    if draw(st.booleans()):
        doc["namespaces"] = draw(st.dictionaries(NAMESPACE, namespace_specs(), max_size=3))
    return doc


def load_text(text: str, name: str = "p.toml") -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        return resolve(path, {})


SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(profiles())
def test_dump_load_gives_the_same_model_and_show_round_trips(doc: dict[str, Any]) -> None:
    resolved = load_text(tomli_w.dumps(doc))
    model = build(resolved)
    # what `engine show` prints re-loads into the same model
    again = build(load_text(tomli_w.dumps(redact(resolved.data))))
    assert again.engine == model.engine
    assert again.server == model.server
    assert again.namespaces == model.namespaces
    assert again.config_hash == model.config_hash
    # and the model says what the document said
    assert model.engine.name == doc["engine"]["name"]
    for key, value in doc.get("server", {}).items():
        got = getattr(model.server, key)
        if key in ("transports", "allowed_origins"):
            assert list(got) == value
        elif key == "trusted_proxies":
            assert [str(n) for n in got] == value
        else:
            assert got == value
    assert set(model.namespaces) == set(doc.get("namespaces", {"/": {}}))


BREAKERS: list[tuple[KeyPath, Any]] = [
    (("server", "port"), "eighty"),
    (("server", "port"), 70000),
    (("server", "transports"), ["smoke-signals"]),
    (("server", "compression"), "yes"),
    (("server", "max_payload_bytes"), 1),
    (("server", "bogus_key"), 1),
    (("engine", "environment"), "staging"),
    (("engine", "nmae"), "x"),
    (("engine", "name"), "has spaces"),
]


@SLOW
@given(profiles(), st.sampled_from(BREAKERS))
def test_a_mutation_is_reported_at_the_mutated_path(
    doc: dict[str, Any], breaker: tuple[KeyPath, Any]
) -> None:
    path, bad = breaker
    doc.setdefault(path[0], {})[path[1]] = bad
    text = tomli_w.dumps(doc)
    try:
        load_text(text)
    except ProfileError as exc:
        reported = [d for d in exc.diagnostics if d.path.startswith(format_path(path))]
    else:
        raise AssertionError("the mutated profile was accepted")
    assert reported, "no diagnostic at the mutated path"
    expected = format_path(path) + ("[0]" if path == ("server", "transports") else "")
    diag = next(d for d in reported if d.path == expected)
    assert diag.line is not None
    line = text.splitlines()[diag.line - 1]
    # the line of the key, or of the offending array element
    assert str(path[-1]) in line or (isinstance(bad, list) and str(bad[0]) in line)


VAR = st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True)
PLAIN = st.text(st.characters(blacklist_characters="${}"), max_size=12)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(PLAIN, VAR, st.booleans(), PLAIN), max_size=4),
    st.dictionaries(VAR, PLAIN, max_size=6),
)
def test_interpolation_is_substitution_piecewise(
    parts: list[tuple[str, str, bool, str]], environ: dict[str, str]
) -> None:
    text, expected = "", ""
    for _, var, with_default, _ in parts:
        if not with_default:
            environ.setdefault(var, "v")  # a bare ${VAR} must be set
    for before, var, with_default, default in parts:
        text += before + ("${" + var + ":-" + default + "}" if with_default else "${" + var + "}")
        value = environ.get(var)
        if with_default:
            expected += before + (value if value else default)
        else:
            expected += before + environ[var]
    result, used = interpolate(text, environ)
    assert result == expected
    assert len(used) == len(parts)


@settings(max_examples=300)
@given(PLAIN)
def test_interpolation_leaves_plain_text_alone(text: str) -> None:
    assert interpolate(text, {}) == (text, ())


JSONISH = st.recursive(
    st.one_of(
        st.integers(), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=3)
    ),
    lambda inner: st.dictionaries(st.sampled_from("abcde"), inner, max_size=4),
    max_leaves=12,
)
TABLES = st.dictionaries(st.sampled_from("abcde"), JSONISH, max_size=4)


def same_shape(*docs: dict[str, Any]) -> bool:
    """No key is a table in one document and a value in another (then replace order matters)."""
    keys = {k for d in docs for k in d}
    for key in keys:
        kinds = {isinstance(d[key], dict) for d in docs if key in d}
        if len(kinds) > 1:
            return False
        if kinds == {True} and not same_shape(*(d[key] for d in docs if key in d)):
            return False
    return True


@settings(max_examples=300)
@given(TABLES, TABLES, TABLES)
def test_merge_laws(a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]) -> None:
    assert merge(a, {}) == a
    assert merge({}, a) == a
    assert merge(a, a) == a
    if same_shape(a, b, c):
        assert merge(merge(a, b), c) == merge(a, merge(b, c))
    merged = merge(a, b)
    assert set(merged) == set(a) | set(b)
    for key, value in b.items():
        if not (isinstance(value, dict) and isinstance(a.get(key), dict)):
            assert merged[key] == value  # arrays and scalars replace


@SLOW
@given(profiles(), profiles())
def test_extends_equals_merge_of_documents(parent: dict[str, Any], child: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        (base / "parent.toml").write_text(tomli_w.dumps(parent))
        (base / "child.toml").write_text(tomli_w.dumps({"extends": "parent.toml", **child}))
        (base / "merged.toml").write_text(tomli_w.dumps(merge(parent, child)))
        try:
            via_extends = build(resolve(base / "child.toml", {}))
        except ProfileError:
            # merging two valid profiles can break a cross-field rule (ping timeout > interval)
            return
        direct = build(resolve(base / "merged.toml", {}))
    assert via_extends.server == direct.server
    assert via_extends.namespaces == direct.namespaces
    assert via_extends.config_hash == direct.config_hash
