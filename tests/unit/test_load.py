"""Loader: interpolation, extends, origins, defaults, secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import ProfileError
from engine.profile.build import build
from engine.profile.load import interpolate, merge
from engine.profile.schema import REDACTED, redact
from engine.profile.validate import resolve

BASE = '[engine]\nname = "x"\nenvironment = "development"\n'


def test_interpolation_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A}", env) == ("1", ("A",))
    assert interpolate("x${A}y${A}", env)[0] == "x1y1"
    assert interpolate("${B:-dflt}", env)[0] == "dflt"
    assert interpolate("${EMPTY:-dflt}", env)[0] == "dflt"
    assert interpolate("$${A}", env) == ("${A}", ())
    assert interpolate("no vars $A", env) == ("no vars $A", ())


def test_interpolation_unset_and_invalid() -> None:
    with pytest.raises(Exception, match="B is not set"):
        interpolate("${B}", {})
    with pytest.raises(Exception, match="invalid variable reference"):
        interpolate("${1A}", {})


def test_merge_replaces_arrays_and_merges_tables() -> None:
    base = {"a": {"x": 1, "l": [1, 2]}, "b": 1}
    over = {"a": {"l": [3]}, "c": 2}
    assert merge(base, over) == {"a": {"x": 1, "l": [3]}, "b": 1, "c": 2}


def test_env_values_are_converted_to_schema_types(write_profile: Callable[..., Path]) -> None:
    path = write_profile(
        BASE + '[server]\nport = "${P}"\ncompression = "${C}"\nping_interval_seconds = "${I}"\n'
        'ping_timeout_seconds = "${I}"\n'
    )
    profile = build(resolve(path, {"P": "9001", "C": "false", "I": "2.5"}))
    assert profile.server.port == 9001
    assert profile.server.compression is False
    assert profile.server.ping_interval_seconds == 2.5


def test_env_conversion_error_names_variable_and_field(write_profile: Callable[..., Path]) -> None:
    path = write_profile(BASE + '[server]\ncompression = "${C}"\n')
    with pytest.raises(ProfileError) as caught:
        resolve(path, {"C": "maybe"})
    (diag,) = caught.value.diagnostics
    assert diag.path == "server.compression"
    assert "environment variable C" in diag.message
    assert diag.line == 5


def test_secret_from_env_is_redacted_in_errors(write_profile: Callable[..., Path]) -> None:
    path = write_profile(BASE + '[server]\ntls_key_password = "${PW}"\nprot = 1\n')
    with pytest.raises(ProfileError) as caught:
        resolve(path, {"PW": "s3cret-value"})
    assert "s3cret-value" not in str(caught.value)


def test_redact_hides_secrets(write_profile: Callable[..., Path]) -> None:
    path = write_profile(
        BASE + '[server]\ntls_cert_file = "c"\ntls_key_file = "k"\ntls_key_password = "pw"\n'
    )
    resolved = resolve(path, {})
    assert redact(resolved.data)["server"]["tls_key_password"] == REDACTED
    profile = build(resolved)
    assert "pw" not in repr(profile.server).replace("password", "")
    assert profile.server.tls_key_password == "pw"
    assert profile.server.tls_cert_file == path.parent / "c"


def test_extends_chain_relative_paths_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "base.toml").write_text(
        BASE + '[server]\nport = 1\ntransports = ["polling", "websocket"]\n'
        'tls_cert_file = "cert.pem"\ntls_key_file = "key.pem"\n'
        '[namespaces."/a"]\nauto_join = ["x"]\n'
    )
    (tmp_path / "child.toml").write_text(
        'extends = "base/base.toml"\n[server]\ntransports = ["websocket"]\n[namespaces."/b"]\n'
    )
    resolved = resolve(tmp_path / "child.toml", {})
    profile = build(resolved)
    assert profile.server.port == 1
    assert profile.server.transports == ("websocket",)
    assert set(profile.namespaces) == {"/a", "/b"}
    assert profile.server.tls_cert_file == tmp_path / "base" / "cert.pem"
    origin = resolved.loaded.origin(("server", "port"))
    assert origin.file is not None
    assert origin.file.endswith("base.toml")
    assert origin.line == 5


def test_defaults_filled_and_config_hash_stable(write_profile: Callable[..., Path]) -> None:
    first = resolve(write_profile(BASE, "a.toml"), {})
    second = resolve(write_profile("# comment\n" + BASE + "[server]\nport = 8000\n", "b.toml"), {})
    assert first.data["server"]["port"] == 8000
    assert first.data["namespaces"] == second.data["namespaces"]
    assert first.config_hash == second.config_hash
    assert ("server", "port") in first.defaulted
    assert ("server", "port") not in second.defaulted
