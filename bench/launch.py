"""Start a benchmark server with the harness's in-process probes, then run it unchanged.

    python -m bench.launch --module engine --profile ...      # python -m engine ...
    python -m bench.launch --script bench/bare_server.py ...  # python bench/bare_server.py ...

Probes (each only when its environment variable names a file):

- ``BENCH_GC_LOG``: every garbage collection's pause, via ``gc.callbacks``: one line
  ``<CLOCK_MONOTONIC at the end, s> <pause, ms> <generation>`` (the harness keeps the lines inside
  its measurement window; the clock is the one `time.monotonic()` reads in every process).
  Buffered, flushed at most every 0.5 s and at exit, so the probe itself adds no system call
  per collection.
- ``BENCH_TABLES``: on SIGUSR2, the sizes of every dict, set, list and deque held by the
  server's long-lived objects (the engine's guard, state store, monitor; python-socketio's and
  python-engineio's servers and managers), as JSON: the soak checks that none of them grows
  once the clients have gone.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import gc
import importlib.util
import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Any

TABLE_CLASSES = {
    "engine.guard.Guard",
    "engine.state.memory.MemoryStateStore",
    "engine.monitoring.monitor.Monitor",
    "socketio.async_server.AsyncServer",
    "engineio.async_server.AsyncServer",
    "socketio.async_manager.AsyncManager",
}


def install_gc_log(path: str) -> None:
    out = open(path, "a", buffering=1 << 16)  # noqa: SIM115 (closed at exit)
    perf = time.perf_counter
    mono = time.monotonic
    state = {"t0": 0.0, "flushed": mono()}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            state["t0"] = perf()
            return
        pause_ms = (perf() - state["t0"]) * 1000.0
        now = mono()
        out.write(f"{now:.6f} {pause_ms:.4f} {info['generation']}\n")
        if now - state["flushed"] > 0.5:
            state["flushed"] = now
            out.flush()

    gc.callbacks.append(callback)
    atexit.register(out.flush)


def _size(value: Any) -> int | None:
    if isinstance(value, (dict, set, frozenset, list, collections.deque)):
        return len(value)
    return None


def table_sizes() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for obj in gc.get_objects():
        cls = type(obj)
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name not in TABLE_CLASSES:
            continue
        fields: dict[str, int] = {}
        attrs = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                attrs[slot] = getattr(obj, slot)
        for key, value in attrs.items():
            n = _size(value)
            if n is not None:
                fields[key] = n
            elif hasattr(value, "__dict__") and type(value).__module__.startswith("engine."):
                for k2, v2 in vars(value).items():  # one level down (the store's tables)
                    n2 = _size(v2)
                    if n2 is not None:
                        fields[f"{key}.{k2}"] = n2
        out[f"{name}@{id(obj):x}"] = fields
    return out


def install_tables(path: str) -> None:
    def dump(signum: int, frame: Any) -> None:
        # gc.get_objects() does not list frozen objects, and the engine freezes what it built
        # at start-up (its guard, store, monitor...): unfreeze to see them. Before any client
        # (request "refreeze") they are frozen again, as at start-up; later they stay unfrozen
        # (freezing live connections would keep their garbage from the collector).
        request = ""
        with contextlib.suppress(OSError):
            request = Path(path + ".req").read_text().strip()
        frozen = gc.get_freeze_count()
        if frozen:
            gc.unfreeze()
        sizes = table_sizes()
        if frozen and request == "refreeze":
            gc.freeze()
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"t": time.monotonic(), "tables": sizes, "was_frozen": frozen}, f)
        os.replace(tmp, path)

    signal.signal(signal.SIGUSR2, dump)


def install_tracemalloc(path: str) -> None:
    """SIGUSR1: the allocations grown since the previous SIGUSR1, by line (for profiling)."""
    import tracemalloc

    tracemalloc.start(1)
    previous: list[Any] = [None]

    def dump(signum: int, frame: Any) -> None:
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        if previous[0] is not None:
            stats = snap.compare_to(previous[0], "lineno")
            with open(path, "a") as f:
                total = sum(s.size_diff for s in stats)
                count = sum(s.count_diff for s in stats)
                f.write(f"== total {total / 1024:.0f} KiB in {count} blocks\n")
                for s in stats[:400]:
                    f.write(f"{s.size_diff / 1024:10.1f} KiB {s.count_diff:8d}  {s.traceback}\n")
        previous[0] = snap

    signal.signal(signal.SIGUSR1, dump)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("--module", "--script"):
        raise SystemExit(__doc__)
    kind, target, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    if os.environ.get("BENCH_GC_LOG"):
        install_gc_log(os.environ["BENCH_GC_LOG"])
    if os.environ.get("BENCH_TRACEMALLOC"):
        install_tracemalloc(os.environ["BENCH_TRACEMALLOC"])
    if os.environ.get("BENCH_TABLES"):
        install_tables(os.environ["BENCH_TABLES"])
    sys.argv = [target, *rest]
    if kind == "--module":
        spec = importlib.util.find_spec(target.partition(".")[0])
        print(f"bench.launch: {target} from {spec.origin if spec else '?'}", file=sys.stderr)
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
