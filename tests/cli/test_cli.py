"""The `engine` command in-process (main(argv) -> int), plus real subprocesses where it matters."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from engine.cli import main
from engine.monitoring.dashboard import is_loopback
from tests.conftest import PYTHON, ROOT, subprocess_env

BASE = '[engine]\nname = "x"\nenvironment = "development"\n'
INVALID = ROOT / "tests" / "profiles" / "invalid"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_validate_ok_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "profiles/development.toml", "profiles/production.toml"]) == 0
    out = capsys.readouterr()
    assert "profiles/development.toml: ok" in out.out
    assert "0 errors, 0 warnings in 2 files" in out.err


def test_validate_reports_all_files_sorted(capsys: pytest.CaptureFixture[str]) -> None:
    files = ["tests/profiles/invalid/wrong-type.toml", "tests/profiles/invalid/many-errors.toml"]
    assert main(["validate", *files]) == 78
    err = capsys.readouterr().err.splitlines()
    many = [line for line in err if "many-errors" in line]
    assert len(many) == 6
    lines = [int(line.split(":")[1]) for line in many]
    assert lines == sorted(lines)
    assert any(
        line.startswith("tests/profiles/invalid/wrong-type.toml:6:1: server.port") for line in err
    )
    assert err[-1] == "7 errors, 0 warnings in 2 files"
    assert "Traceback" not in "\n".join(err)


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "json", "tests/profiles/invalid/unknown-key.toml"]) == 78
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    (diag,) = report["files"][0]["diagnostics"]
    assert diag["path"] == "server.prot"
    assert diag["line"] == 6
    assert diag["hint"] == "did you mean 'port'?"


def test_warnings_and_strict(
    write_profile: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_profile(
        '[engine]\nname = "p"\nenvironment = "production"\n[server]\nallowed_origins = ["*"]\n'
        '[namespaces."/"]\nevents = ["a"]\n'
    )
    assert main(["validate", str(path)]) == 0
    assert "warning: any origin may connect in a production profile" in capsys.readouterr().err
    assert main(["validate", "--strict", str(path)]) == 78


def test_check_env_imports_handlers(
    write_profile: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_profile(
        BASE + '[namespaces."/"]\nhandler = "tests.handlers:EchoNamespace"\n', "g.toml"
    )
    missing = write_profile(BASE + '[namespaces."/"]\nhandler = "tests.handlers:Nope"\n', "m.toml")
    wrong = write_profile(
        BASE + '[namespaces."/"]\nhandler = "tests.handlers:NotANamespace"\n', "w.toml"
    )
    assert main(["validate", str(missing)]) == 0
    assert main(["validate", "--check-env", str(good)]) == 0
    assert main(["validate", "--check-env", str(missing), str(wrong)]) == 78
    err = capsys.readouterr().err
    assert "module 'tests.handlers' has no attribute 'Nope'" in err
    assert "is not a socketio.AsyncNamespace subclass" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--bind", "nonsense", "--profile", "profiles/development.toml"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_show_redacts_and_resolves(
    write_profile: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_profile(
        BASE + '[server]\nport = "${PORT:-7000}"\ntls_cert_file = "c"\ntls_key_file = "k"\n'
        'tls_key_password = "${PW}"\n'
    )
    monkey_env = {"PW": "very-secret-password"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in monkey_env.items():
            mp.setenv(key, value)
        assert main(["show", str(path)]) == 0
        shown = capsys.readouterr().out
        assert main(["show", "--origin", str(path)]) == 0
        origins = capsys.readouterr().out
    assert "very-secret-password" not in shown + origins
    assert 'tls_key_password = "<redacted>"' in shown
    assert "port = 7000" in shown
    assert "max_payload_bytes = 1000000" in shown
    assert "server.port = 7000  # env PORT (unset, default used)" in origins
    assert "server.max_payload_bytes = 1000000  # default" in origins
    assert f'engine.name = "x"  # {path}:2' in origins


def test_diff_orders_security_first(
    write_profile: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_profile(
        BASE + '[server]\nport = 1\ntls_key_password = "old-secret-value"\n', "old.toml"
    )
    new = write_profile(
        BASE
        + '[server]\nport = 2\nallowed_origins = ["*"]\ntls_key_password = "new-secret-value"\n',
        "new.toml",
    )
    assert main(["diff", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "secret-value" not in out
    security = out.index("security-relevant:")
    other = out.index("other:")
    assert security < out.index('~ server.allowed_origins: [] -> ["*"]') < other
    assert (
        security
        < out.index("~ server.tls_key_password: <redacted> -> <redacted>  (secret changed)")
        < other
    )
    assert other < out.index("~ server.port: 1 -> 2")
    assert main(["diff", str(old), str(old)]) == 0
    assert "no differences" in capsys.readouterr().out


def test_unset_variable_fails_run_and_check_env_not_plain_validate(
    write_profile: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_profile(BASE + '[server]\nhost = "${ENGINE_TEST_SURELY_UNSET}"\n')
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--check-env", str(path)]) == 78
    message = "server.host: environment variable ENGINE_TEST_SURELY_UNSET is not set"
    assert message in capsys.readouterr().err
    assert main(["--profile", str(path)]) == 78
    assert message in capsys.readouterr().err


def test_shipped_production_profile_names_its_missing_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGINE_JWT_SECRET", raising=False)
    assert main(["--profile", "profiles/production.toml"]) == 78
    assert "auth.jwt.secret: environment variable ENGINE_JWT_SECRET is not set" in (
        capsys.readouterr().err
    )


def test_run_invalid_profile_exits_78_without_traceback() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "engine", "--profile", str(INVALID / "unknown-key.toml")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert done.returncode == 78
    assert "server.prot: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_serves_then_exits_0_on_sigterm(write_profile: Callable[..., Path]) -> None:
    path = write_profile(BASE + "[server]\nshutdown_grace_seconds = 5\n")
    proc = subprocess.Popen(
        [PYTHON, "-m", "engine", "--profile", str(path), "--bind", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "engine serving profile=x environment=development namespaces=/" in line
        bind = line.split("bind=")[1].split()[0]
        assert "config_hash=" in line
        ready = httpx.get(f"http://{bind}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["profile"] == "x"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_pre_commit_manifest_entry_runs() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "engine-validate"
    entry = shlex.split(hook["entry"])
    assert entry[0] == "engine"
    command = [str(Path(PYTHON).parent / "engine"), *entry[1:]]
    valid = [str(p) for p in sorted((ROOT / "profiles").glob("*.toml"))]
    invalid = [str(INVALID / "bad-enum.toml"), str(INVALID / "syntax.toml")]
    ok = subprocess.run([*command, *valid], capture_output=True, text=True, env=subprocess_env())
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [*command, *valid, *invalid], capture_output=True, text=True, env=subprocess_env()
    )
    assert bad.returncode == 78
    assert "bad-enum.toml:3:1: engine.environment: not an allowed value" in bad.stderr
    assert "syntax.toml:3:27: <toml>: TOML syntax error" in bad.stderr


def test_show_and_diff_need_no_environment_and_name_what_is_unset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ENGINE_JWT_SECRET", "ENGINE_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["diff", "profiles/production.toml", "profiles/maintenance.toml"]) == 0
    captured = capsys.readouterr()
    assert '~ engine.environment: "production" -> "maintenance"' in captured.out
    unset = "environment variables ENGINE_ADMIN_TOKEN, ENGINE_JWT_SECRET not set"
    assert captured.err.count(unset) == 2
    assert main(["show", "profiles/production.toml"]) == 0
    captured = capsys.readouterr()
    assert 'secret = "<redacted>"' in captured.out
    assert "<unset:" not in captured.out
    assert unset in captured.err
    assert main(["show", "--check-env", "profiles/production.toml"]) == 78
    err = capsys.readouterr().err
    assert "auth.jwt.secret: environment variable ENGINE_JWT_SECRET is not set" in err
    assert "monitoring.dashboard.token: environment variable ENGINE_ADMIN_TOKEN is not set" in err
    assert main(["diff", "--check-env", "profiles/production.toml", "profiles/maintenance.toml"])
    assert "ENGINE_JWT_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_JWT_SECRET", "s" * 32)
    monkeypatch.setenv("ENGINE_ADMIN_TOKEN", "t" * 32)
    assert main(["show", "--check-env", "profiles/production.toml"]) == 0
    captured = capsys.readouterr()
    assert "not set" not in captured.err
    assert "s" * 32 not in captured.out


def test_validate_reports_schema_and_semantic_errors_in_one_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(INVALID / "missing-and-bad-namespace.toml")]) == 78
    err = capsys.readouterr().err
    assert "engine: missing required key 'environment'" in err
    assert "namespaces.chat: invalid namespace name" in err
    assert main(["validate", str(INVALID / "schema-and-semantic.toml")]) == 78
    err = capsys.readouterr().err
    assert "engine.colour: unknown key" in err
    assert "server.ping_timeout_seconds: ping timeout is longer" in err
    assert "monitoring.dashboard: the dashboard is enabled without a token on 0.0.0.0" in err


def test_tokenless_dashboard_is_refused_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bind", "0.0.0.0:0"]) == 78  # the embedded development profile
    err = capsys.readouterr().err
    assert "monitoring.dashboard: --bind 0.0.0.0:0: the dashboard is enabled without a token" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_dev_profile_serves_its_dashboard_and_metrics_and_says_where() -> None:
    """What `scripts/dev` runs: the embedded development profile, looked at over HTTP."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "engine", "--bind", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert proc.stderr is not None
        serving = proc.stderr.readline()
        assert "engine serving profile=development" in serving, serving
        bind = serving.split("bind=")[1].split()[0]
        dashboard_line = proc.stderr.readline().strip()
        metrics_line = proc.stderr.readline().strip()
        assert dashboard_line == (
            f"engine dashboard: http://{bind}/engine/dashboard (no token: local clients only)"
        )
        assert metrics_line == f"engine metrics: http://{bind}/metrics"
        page = httpx.get(f"http://{bind}/engine/dashboard", timeout=5)
        assert page.status_code == 200
        assert 'id="connections"' in page.text
        stats = httpx.get(f"http://{bind}/engine/api/stats", timeout=5)
        assert stats.status_code == 200
        assert "summary" in stats.json()
        metrics = httpx.get(f"http://{bind}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "engine_config_info" in metrics.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
