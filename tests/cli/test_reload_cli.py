"""`engine reload` end to end against an engine running as a subprocess; SIGHUP."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from engine.errors import EX_CONFIG
from engine.profile.build import load_profile
from tests.conftest import PYTHON, subprocess_env

ADMIN_TOKEN = "admin-token-of-the-reload-cli-tests"

BASE = f"""
[engine]
name = "cli"
environment = "development"

[server]
shutdown_grace_seconds = 2

[admin]
token = "{ADMIN_TOKEN}"

[monitoring.sinks.prometheus]
type = "prometheus"
path = "/metrics"

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
"""


def with_events(*events: str, server: str = "") -> str:
    listed = ", ".join(f'"{e}"' for e in events)
    text = BASE + f"events = [{listed}]\n"
    return text.replace("[server]\n", f"[server]\n{server}") if server else text


class EngineProcess:
    """`python -m engine --profile FILE --bind 127.0.0.1:0`; its log lines, read as they come."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "engine", "--profile", str(profile), "--bind", "127.0.0.1:0"],
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        serving = self.wait_for("engine serving")
        self.url = "http://" + serving.split("bind=")[1].split()[0]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, within: float = 15.0) -> str:
        """The next log line containing `text` (lines before it are skipped)."""
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} was not logged within {within} s"
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if text in line:
                return line

    def status(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{self.url}/readyz", timeout=5).json()
        return body

    def reload(self, profile: Path | None) -> subprocess.CompletedProcess[str]:
        """The real `engine reload` command, in its own process."""
        args = ["--profile", str(profile)] if profile is not None else []
        return subprocess.run(
            [PYTHON, "-m", "engine", "reload", *args, "--url", self.url],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


@pytest.fixture
def engine_process() -> Iterator[Callable[[Path], EngineProcess]]:
    started: list[EngineProcess] = []

    def start(profile: Path) -> EngineProcess:
        started.append(EngineProcess(profile))
        return started[-1]

    yield start
    for engine in started:
        engine.proc.kill()
        engine.proc.wait()
        engine.reader.join(timeout=5)
        if engine.proc.stderr is not None:
            engine.proc.stderr.close()


def config_hash(path: Path) -> str:
    return load_profile(path, {}).config_hash


def test_engine_reload_prints_the_diff_and_exits_by_outcome(
    write_profile: Callable[..., Path], engine_process: Callable[[Path], EngineProcess]
) -> None:
    started = write_profile(with_events("echo"))
    engine = engine_process(started)
    assert engine.status()["config_hash"] == config_hash(started)

    added = write_profile(with_events("echo", "added"), "added.toml")
    began = time.perf_counter()
    done = engine.reload(added)
    print(f"\nengine reload (CLI process start to exit): {time.perf_counter() - began:.2f} s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"reload applied: {config_hash(started)} -> {config_hash(added)}"
    )
    assert "  live:" in done.stdout
    assert '~ namespaces."/".events: ["echo"] -> ["echo", "added"]' in done.stdout
    assert engine.status()["config_hash"] == config_hash(added)

    unchanged = engine.reload(added)
    assert unchanged.returncode == 0
    assert unchanged.stdout.startswith("reload unchanged:")

    # restart-required: refused whole, the live change beside it is not applied either
    restart = write_profile(
        with_events("echo", server="ping_interval_seconds = 30\n"), "restart.toml"
    )
    refused = engine.reload(restart)
    assert refused.returncode not in (0, EX_CONFIG), refused
    assert refused.stdout.startswith("reload refused:")
    assert "restart required (the running profile is unchanged):" in refused.stdout
    assert "~ server.ping_interval_seconds: 25 -> 30" in refused.stdout
    assert "live (not applied):" in refused.stdout
    assert engine.status()["config_hash"] == config_hash(added)

    # invalid in the file: the CLI says so and sends nothing
    broken = write_profile(with_events("echo") + "\n[server]\nprot = 1\n", "broken.toml")
    invalid = engine.reload(broken)
    assert invalid.returncode == EX_CONFIG
    assert "nothing was sent" in invalid.stderr
    # invalid for the engine only (a handler it cannot import): the engine says why
    missing = write_profile(
        with_events("echo") + '\n[namespaces."/x"]\nhandler = "tests.nowhere:Missing"\n',
        "missing.toml",
    )
    refused_by_engine = engine.reload(missing)
    assert refused_by_engine.returncode == EX_CONFIG, refused_by_engine
    assert refused_by_engine.stdout.startswith("reload invalid:")
    assert "namespaces./x.handler: cannot import 'tests.nowhere:Missing'" in (
        refused_by_engine.stdout
    )
    assert engine.status()["config_hash"] == config_hash(added)

    metrics = httpx.get(f"{engine.url}/metrics", timeout=5).text
    for result, count in (("applied", 1), ("unchanged", 1), ("refused", 1), ("invalid", 1)):
        assert f'engine_config_reloads_total{{result="{result}"}} {count}.0' in metrics
    assert engine.stop() == 0


def test_sighup_rereads_the_file_the_engine_was_started_with(
    write_profile: Callable[..., Path], engine_process: Callable[[Path], EngineProcess]
) -> None:
    started = write_profile(with_events("echo"))
    engine = engine_process(started)

    started.write_text(with_events("echo", "added"))
    began = time.perf_counter()
    engine.proc.send_signal(signal.SIGHUP)
    line = engine.wait_for("reload applied")
    print(f"\nSIGHUP to 'reload applied' logged: {(time.perf_counter() - began) * 1000:.0f} ms")
    assert config_hash(started) in line
    assert engine.status()["config_hash"] == config_hash(started)

    # another file swapped in by `engine reload`; SIGHUP still goes back to the started one
    other = write_profile(with_events("echo", "other"), "other.toml")
    assert engine.reload(other).returncode == 0
    assert engine.status()["config_hash"] == config_hash(other)
    engine.proc.send_signal(signal.SIGHUP)
    engine.wait_for("reload applied")
    assert engine.status()["config_hash"] == config_hash(started)

    # a broken file on SIGHUP: logged, the engine keeps serving what it had
    serving = engine.status()["config_hash"]
    started.write_text(with_events("echo") + "\n[server\n")
    engine.proc.send_signal(signal.SIGHUP)
    engine.wait_for("reload invalid")
    assert engine.status()["config_hash"] == serving
    assert engine.stop() == 0
