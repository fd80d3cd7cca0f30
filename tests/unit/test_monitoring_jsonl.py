"""jsonl sink rotation under concurrent writers: real threads and real processes."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from engine.monitoring import Monitor, MonitoringOptions
from engine.monitoring.sinks import JsonlWriter

WRITERS = 4
PER_WRITER = 400
MAX_BYTES = 8 * 1024
RETENTION = 10_000  # keep every rotated file so that every line can be counted


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _options(path: Path) -> MonitoringOptions:
    return MonitoringOptions.from_profile(
        {
            "sinks": {
                "audit": {
                    "type": "jsonl",
                    "path": str(path),
                    "max_bytes": MAX_BYTES,
                    "retention": RETENTION,
                    "streams": ["security"],
                    "queue_size": 64,
                }
            }
        }
    )


def write_through_monitor(path: str, writer: str, count: int) -> None:
    """One writer: its own Monitor and event loop, running the sink while offering records."""

    async def main() -> None:
        monitor = Monitor(
            _options(Path(path)), profile_name="t", config_hash="h", declared_events={}
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            for i in range(count):
                # wait for room instead of dropping: this test is about rotation, not overflow
                while monitor.sinks[0].queued >= 60:
                    await anyio.lowlevel.checkpoint()
                monitor.security_event(
                    {"type": "probe", "writer": writer, "i": i, "pad": "x" * (i % 97)}
                )
            while monitor.sinks[0].queued:
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        await monitor.aclose()
        assert monitor.sinks[0].dropped == 0

    anyio.run(main, backend="asyncio")


def write_direct(path: str, writer: str, count: int) -> None:
    """One writer using JsonlWriter directly with one line per call (maximum interleaving)."""
    w = JsonlWriter(path, MAX_BYTES, RETENTION)
    try:
        for i in range(count):
            line = json.dumps({"writer": writer, "i": i, "pad": "y" * (i % 131)}) + "\n"
            w.write_lines([line.encode()])
    finally:
        w.close()


def read_all(path: Path) -> list[dict[str, object]]:
    files = [path, *sorted(path.parent.glob(path.name + ".[0-9]*"))]
    records: list[dict[str, object]] = []
    for f in files:
        data = f.read_bytes()
        assert not data or data.endswith(b"\n"), f"{f} ends with a torn line"
        for raw in data.splitlines():
            records.append(json.loads(raw))  # a torn or interleaved line would not parse
    return records


def check(path: Path, writers: list[str], per_writer: int) -> None:
    records = read_all(path)
    assert len(records) == len(writers) * per_writer
    seen = {(r["writer"], r["i"]) for r in records}
    assert seen == {(w, i) for w in writers for i in range(per_writer)}
    rotated = list(path.parent.glob(path.name + ".[0-9]*"))
    assert len(rotated) >= 5, "the test must actually rotate"
    for f in [path, *rotated]:
        # soft bound: concurrent in-flight lines may overshoot by a few lines
        assert f.stat().st_size <= MAX_BYTES + WRITERS * 512


def run_threads(target: Callable[[str, str, int], None], path: Path) -> list[str]:
    names = [f"t{n}" for n in range(WRITERS)]
    errors: list[BaseException] = []

    def guarded(name: str) -> None:
        try:
            target(str(path), name, PER_WRITER)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return names


def test_threads_with_monitors(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    names = run_threads(write_through_monitor, path)
    check(path, names, PER_WRITER)


def test_threads_direct_writers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    names = run_threads(write_direct, path)
    check(path, names, PER_WRITER)


@pytest.mark.parametrize("target", [write_through_monitor, write_direct])
def test_processes(tmp_path: Path, target: Callable[[str, str, int], None]) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("spawn")
    names = [f"p{n}" for n in range(WRITERS)]
    procs = [ctx.Process(target=target, args=(str(path), n, PER_WRITER)) for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    check(path, names, PER_WRITER)


def test_retention_keeps_at_most_n_files(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    w = JsonlWriter(str(path), 100, 3)
    for i in range(50):
        w.write_lines([json.dumps({"i": i, "pad": "z" * 40}).encode() + b"\n"])
    w.close()
    rotated = sorted(p.name for p in tmp_path.glob("small.jsonl.[0-9]*"))
    assert rotated == ["small.jsonl.1", "small.jsonl.2", "small.jsonl.3"]
    newest = [json.loads(x)["i"] for x in path.read_text().splitlines()]
    previous = [json.loads(x)["i"] for x in (tmp_path / "small.jsonl.1").read_text().splitlines()]
    assert newest[-1] == 49
    assert previous[-1] + 1 == newest[0]


def test_oversized_line_goes_to_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    w = JsonlWriter(str(path), 50, 2)
    w.write_lines([b'{"a":1}\n', b'{"b":"' + b"q" * 200 + b'"}\n', b'{"c":3}\n'])
    w.close()
    assert path.read_bytes() == b'{"c":3}\n'
    assert (tmp_path / "big.jsonl.1").read_bytes().startswith(b'{"b":')
    assert (tmp_path / "big.jsonl.2").read_bytes() == b'{"a":1}\n'
