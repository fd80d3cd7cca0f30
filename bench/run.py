"""Benchmark orchestration: engine vs bare python-socketio, interleaved, in one invocation.

    python -m bench.run [--quick] [--targets bare,engine-dev,engine-prod] [--scenarios a,b,c,d,e]
                        [--repeat N] [--set a.durationS=10] [--auth engine-prod=jwt]

Each (scenario, repetition, target) gets a fresh server process on 127.0.0.1, pinned to one core,
and a fresh Node load generator (bench/loadgen/loadgen.js) pinned to another. Runs are interleaved
target by target (A B C A B C ...) so machine drift spreads over all targets. See bench/README.md.
Stdlib only (plus the venv's packages for the version report).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LOADGEN = BENCH / "loadgen" / "loadgen.js"
CHECK_PROTOCOL = BENCH / "loadgen" / "check_protocol.js"
RESULTS = BENCH / "results"
JWT_SECRET_DEFAULT = "bench-only-secret-not-for-production-0123456789abcdef"
ADMIN_TOKEN_DEFAULT = "bench-only-admin-token-0123456789"
LOADGEN_CPU_LIMIT = 0.90  # fraction of one core above which the generator is the bottleneck
READY_TIMEOUT_S = 30.0
FOREIGN_LOAD_LIMIT = 0.15  # busy share of a benchmark CPU from other processes -> warning

# ---------------------------------------------------------------------------------------------
# scenarios

SCENARIOS: dict[str, dict[str, Any]] = {
    "a": {
        "title": "closed loop: {clients} clients, {payloadBytes} B echo with ack, {durationS} s",
        "full": {"clients": 50, "payloadBytes": 64, "durationS": 30, "warmupS": 2},
        "quick": {"clients": 50, "payloadBytes": 64, "durationS": 3, "warmupS": 0.5},
        "better": {"msgs_per_s": "higher", "msgs_per_server_cpu_s": "higher"},
    },
    "b": {
        "title": "open loop: {clients} clients x {ratePerClient} msg/s, {durationS} s",
        "full": {
            "clients": 1000,
            "ratePerClient": 1,
            "payloadBytes": 64,
            "durationS": 30,
            "warmupS": 2,
        },
        "quick": {
            "clients": 200,
            "ratePerClient": 1,
            "payloadBytes": 64,
            "durationS": 3,
            "warmupS": 0.5,
        },
        "better": {},
    },
    "c": {
        "title": "idle: {connections} websocket connections ramped at {rampPerS}/s, held {holdS} s",
        "full": {"connections": 5000, "rampPerS": 500, "holdS": 5},
        "quick": {"connections": 500, "rampPerS": 500, "holdS": 1},
        "better": {"connected": "higher"},
    },
    "d": {
        "title": "connect rate: {inFlight} handshakes in flight, {durationS} s",
        "full": {"inFlight": 50, "durationS": 30, "warmupS": 2},
        "quick": {"inFlight": 50, "durationS": 3, "warmupS": 0.5},
        "better": {"connects_per_s": "higher", "connects_per_server_cpu_s": "higher"},
    },
    "e": {
        "title": "fan-out: one emit to a room of {clients}, {rounds} rounds",
        "full": {"clients": 1000, "rounds": 30, "warmupRounds": 2, "roundGapMs": 200},
        "quick": {"clients": 200, "rounds": 5, "warmupRounds": 1, "roundGapMs": 100},
        "better": {},
    },
    "f": {
        "title": "connect flood of {floodPerS}/s from {floodAddress} (production limits) while "
        "{victimClients} victims send {victimRate} msg/s; {phaseS} s quiet, {phaseS} s flood",
        "full": {
            "victimClients": 200,
            "victimRate": 5,
            "floodPerS": 650,
            "floodAddress": "127.0.0.2",
            "phaseS": 15,
        },
        "quick": {
            "victimClients": 50,
            "victimRate": 5,
            "floodPerS": 300,
            "floodAddress": "127.0.0.2",
            "phaseS": 3,
        },
        "better": {"refusals_per_s": "higher"},
        "production_limits": True,
    },
    "g": {
        "title": "{senders} senders of oversize frames {frameBytes} B, "
        "{framesPerSPerSender}/s each (production limits) while {victimClients} victims send "
        "{victimRate} msg/s; {phaseS} s per phase",
        "full": {
            "victimClients": 200,
            "victimRate": 5,
            "senders": 4,
            "frameBytes": [1048576, 10485760],
            "framesPerSPerSender": 4,
            "phaseS": 15,
        },
        "quick": {
            "victimClients": 50,
            "victimRate": 5,
            "senders": 2,
            "frameBytes": [1048576],
            "framesPerSPerSender": 2,
            "phaseS": 3,
        },
        "better": {},
        "production_limits": True,
    },
    "s": {
        "title": "soak: {steadyClients} clients x {ratePerClient} msg/s plus {churnPerS} "
        "connects/s of churn, {durationS} s",
        "full": {
            "steadyClients": 2000,
            "ratePerClient": 1,
            "churnPerS": 50,
            "durationS": 600,
            "sampleEveryS": 30,
        },
        "quick": {
            "steadyClients": 200,
            "ratePerClient": 1,
            "churnPerS": 10,
            "durationS": 20,
            "sampleEveryS": 5,
        },
        "better": {},
    },
}
DEFAULT_SCENARIOS = "a,b,c,d,e,f,g"  # s (the soak, 10 min) only with --soak or --scenarios s
# a figure not listed in "better" is lower-is-better (latencies, memory, failures)

# ---------------------------------------------------------------------------------------------
# targets


@dataclass
class Target:
    name: str
    argv: Callable[[int], list[str]]
    auth: dict[str, Any] | None = None
    nsp: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # worker processes ([server] workers): readiness waits for each one
    every_cpu: bool = False  # the server may run on every CPU (workers), not only the first
    # runs only the scenarios against production limits (f, g), and only those run on it
    production_limits: bool = False


def _py() -> str:
    return sys.executable


def _launch(kind: str, what: str, *args: str) -> Callable[[int], list[str]]:
    """The server under bench.launch (GC pause log, table sizes), otherwise unchanged."""
    launcher = str(BENCH / "launch.py")  # by path: a BENCH_ROOT checkout may predate it
    return lambda port: [_py(), launcher, kind, what, *args, "--bind", f"127.0.0.1:{port}"]


JWT_AUTH = {"jwt": {"secret_env": "ENGINE_JWT_SECRET", "sub_prefix": "bench-", "roles": ["user"]}}

TARGETS: dict[str, Target] = {
    # python-socketio + hypercorn defaults: permessage-deflate accepted when offered
    "bare": Target("bare", _launch("--script", "bench/bare_server.py")),
    # the same with permessage-deflate refused, as the engine's profiles do: the like-for-like
    # baseline of the ratios
    "bare-nodeflate": Target(
        "bare-nodeflate", _launch("--script", "bench/bare_server.py", "--no-deflate")
    ),
    "engine-dev": Target(
        "engine-dev",
        # profiles/development.toml + the bench echo handler and room "all" (it has no handler)
        _launch("--module", "engine", "--profile", "bench/profiles/development-bench.toml"),
    ),
    "engine-prod": Target(
        "engine-prod",
        _launch("--module", "engine", "--profile", "bench/profiles/production-bench.toml"),
        auth=JWT_AUTH,
    ),
    # profiles/production.toml's own limits (the refusal scenarios f and g)
    "engine-prod-limits": Target(
        "engine-prod-limits",
        _launch("--module", "engine", "--profile", "bench/profiles/production-limits.toml"),
        auth=JWT_AUTH,
        production_limits=True,
    ),
}
BASELINES = ("bare-nodeflate", "bare")


def _workers_target(workers: int) -> Target:
    """The bench development profile with `[server] workers = N` (bench/profiles/workers-bench)."""
    return Target(
        f"engine-w{workers}",
        lambda port: [
            _py(),
            "-m",
            "engine",
            "--profile",
            "bench/profiles/workers-bench.toml",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env={"BENCH_WORKERS": str(workers)},
        workers=workers,
        # one worker keeps its own core as the other targets do; two take both cores, sharing
        # the second with the load generator (its CPU is reported with every run)
        every_cpu=workers > 1,
    )


TARGETS["engine-w1"] = _workers_target(1)
TARGETS["engine-w2"] = _workers_target(2)


def parse_auth(spec: str) -> dict[str, Any] | None:
    """none | jwt | jwt:role1+role2 | json:{"token": "..."} (static CONNECT payload)."""
    if spec == "none":
        return None
    if spec == "jwt" or spec.startswith("jwt:"):
        roles = spec[4:].split("+") if spec.startswith("jwt:") else ["user"]
        return {"jwt": {"secret_env": "ENGINE_JWT_SECRET", "sub_prefix": "bench-", "roles": roles}}
    if spec.startswith("json:"):
        return {"static": json.loads(spec[5:])}
    raise SystemExit(f"--auth: unknown auth spec {spec!r} (none, jwt, jwt:role+role, json:{{...}})")


# ---------------------------------------------------------------------------------------------
# machine


def cpu_plan() -> tuple[set[int] | None, set[int] | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"only {len(cpus)} CPU available: server and load generator share it"
    return {cpus[0]}, {cpus[1]}, f"server on CPU {cpus[0]}, load generator on CPU {cpus[1]}"


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    for limits in ((want, want), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return
        except (ValueError, OSError):
            continue


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": platform.platform(),
        "mem_total_mb": mem_kb // 1024 if mem_kb else None,
        "python": platform.python_version(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("python-socketio", "python-engineio", "hypercorn", "wsproto", "h11", "engine"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        out["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["node"] = None
    for pkg in ("ws", "socket.io-client"):
        pj = BENCH / "node_modules" / pkg / "package.json"
        out[pkg] = json.loads(pj.read_text())["version"] if pj.exists() else None
    return out


# ---------------------------------------------------------------------------------------------
# process sampling (/proc)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(_children(p))
    return tree


def cpu_jiffies() -> dict[int, tuple[int, int]]:
    """Per CPU (busy, total) jiffies from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals[:8]]
                idle = v[3] + v[4]
                out[int(name[3:])] = (sum(v) - idle, sum(v))
    return out


def sample(pid: int) -> dict[str, Any]:
    """VmRSS (kB) and CPU seconds (user+system) of the server and its descendants."""
    rss_kb = 0
    cpu_s = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu_s += (int(fields[11]) + int(fields[12])) / tick
    return {"t": time.monotonic(), "rss_kb": rss_kb, "cpu_s": cpu_s, "cpus": cpu_jiffies()}


def foreign_load(
    w0: dict[str, Any], w1: dict[str, Any], cpu: set[int] | None, own_fraction: float | None
) -> float | None:
    """Busy fraction of `cpu` over the window not explained by our own process on it."""
    if not cpu or own_fraction is None or len(cpu) != 1:
        return None  # a server on several CPUs (workers): not attributable per CPU
    (c,) = cpu
    if c not in w0["cpus"] or c not in w1["cpus"]:
        return None
    busy: int = w1["cpus"][c][0] - w0["cpus"][c][0]
    total: int = w1["cpus"][c][1] - w0["cpus"][c][1]
    if total <= 0:
        return None
    return max(0.0, busy / total - own_fraction)


# ---------------------------------------------------------------------------------------------
# servers


class TargetUnavailable(Exception):
    pass


def free_port(run: int = 1) -> int:
    """A free port P on 127.0.0.1 such that P .. P + run - 1 are all free."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + run > 65536:
            continue
        held: list[socket.socket] = []
        try:
            for candidate in range(port, port + run):
                held.append(socket.socket())
                held[-1].bind(("127.0.0.1", candidate))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return port
    raise RuntimeError(f"no {run} consecutive free ports")


def _preexec(cpus: set[int] | None) -> Callable[[], None]:
    def fn() -> None:
        raise_nofile()
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)
        os.setpgrp()  # own process group: we can signal the server and anything it forks

    return fn


class Server:
    def __init__(self, target: Target, cpus: set[int] | None, env: dict[str, str], logdir: Path):
        self.target = target
        # several workers also listen on port + 1 .. port + workers: all of them must be free
        self.port = free_port(target.workers + 1 if target.workers > 1 else 1)
        self.argv = target.argv(self.port)
        if "BENCH_PROFILE" in target.env and "--profile" in self.argv:
            # a --variant with another profile (e.g. one extending the target's with one knob)
            self.argv[self.argv.index("--profile") + 1] = target.env["BENCH_PROFILE"]
        self.log_path = logdir / f"{target.name}-{self.port}.log"
        self.gc_path = logdir / f"gc-{target.name}-{self.port}.log"
        self.tables_path = logdir / f"tables-{target.name}-{self.port}.json"
        self._log = self.log_path.open("wb")
        probes = {"BENCH_GC_LOG": str(self.gc_path), "BENCH_TABLES": str(self.tables_path)}
        # BENCH_ROOT (a --variant setting): run another checkout's engine, e.g. the commit before
        root = target.env.get("BENCH_ROOT", str(ROOT))
        full_env = {**env, **probes, **target.env}
        if "BENCH_ROOT" in target.env:
            full_env["PYTHONPATH"] = os.pathsep.join([root, str(ROOT)])
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=root,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(cpus),
            )
        except OSError as exc:
            self._log.close()
            raise TargetUnavailable(f"could not execute {self.argv[0]}: {exc}") from exc

    def log_tail(self, lines: int = 12) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return "\n".join("    | " + line for line in text[-lines:])
        return ""

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        t0 = time.monotonic()
        workers = self.target.workers
        # several workers: each also listens on port + i; wait until every one is ready
        ports = [self.port + i for i in range(1, workers + 1)] if workers > 1 else [self.port]
        for port in ports:
            self._wait_ready(f"http://127.0.0.1:{port}/readyz", t0, timeout)
        return time.monotonic() - t0

    def _wait_ready(self, url: str, t0: float, timeout: float) -> None:
        last = "no answer"
        while time.monotonic() - t0 < timeout:
            rc = self.proc.poll()
            if rc is not None:
                raise TargetUnavailable(
                    f"server process exited with code {rc} before it was ready\n"
                    f"    command: {' '.join(self.argv)}\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                last = str(getattr(exc, "reason", exc))
            time.sleep(0.05)
        self.stop()
        raise TargetUnavailable(
            f"GET /readyz did not return 200 within {timeout:.0f} s (last: {last})\n"
            f"    command: {' '.join(self.argv)}\n{self.log_tail()}"
        )

    def tables(self, timeout: float = 5.0, refreeze: bool = False) -> dict[str, Any] | None:
        """Per-client table sizes of the server process (bench.launch, SIGUSR2)."""
        before = self.tables_path.stat().st_mtime_ns if self.tables_path.exists() else 0
        Path(str(self.tables_path) + ".req").write_text("refreeze" if refreeze else "")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.tables_path.exists() and self.tables_path.stat().st_mtime_ns != before:
                with contextlib.suppress(ValueError, OSError):
                    return dict(json.loads(self.tables_path.read_text())["tables"])
            time.sleep(0.05)
        return None

    def gc_pauses(self, t0: float, t1: float) -> list[tuple[float, float, int]]:
        """(end time, pause ms, generation) of the collections between t0 and t1."""
        out = []
        with contextlib.suppress(OSError):
            for line in self.gc_path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    t, ms, gen = float(parts[0]), float(parts[1]), int(parts[2])
                    if t0 <= t <= t1:
                        out.append((t, ms, gen))
        return out

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# one run


def loadgen_timeout(params: dict[str, Any]) -> float:
    t = 60.0 + 2 * (params.get("durationS", 0) + params.get("warmupS", 0))
    t += params.get("holdS", 0) + 2 * params.get("connections", 0) / max(
        1, params.get("rampPerS", 1)
    )
    t += (
        (params.get("rounds", 0) + params.get("warmupRounds", 0))
        * (params.get("roundGapMs", 200) + 500)
        / 1000
    )
    t += params.get("clients", 0) / 100  # setup
    return float(t)


TABLE_MARKS = ("soak_baseline", "soak_end", "soak_after_leave")


def run_loadgen(
    config: dict[str, Any], cpus: set[int] | None, server: Server, logdir: Path, tag: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    server_pid = server.proc.pid
    marks: dict[str, Any] = {"start": sample(server_pid)}
    curve: list[dict[str, Any]] = []
    err_path = logdir / f"loadgen-{tag}.log"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            ["node", str(LOADGEN), json.dumps(config)],
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            preexec_fn=_preexec(cpus),
        )
        killer = threading.Timer(loadgen_timeout(config), proc.kill)
        killer.start()
        result: dict[str, Any] | None = None
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("type") == "mark":
                    s = sample(server_pid)
                    s.update({k: v for k, v in msg.items() if k not in ("type", "name", "wait")})
                    if msg["name"] in TABLE_MARKS:
                        s["tables"] = server.tables(refreeze=msg["name"] == "soak_baseline")
                    if msg["name"] == "soak_sample":
                        curve.append(s)
                    marks[msg["name"]] = s
                    if msg.get("wait"):
                        proc.stdin.write("ok\n")
                        proc.stdin.flush()
                elif msg.get("type") == "result":
                    result = msg
            proc.wait()
        finally:
            killer.cancel()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
    marks["end"] = sample(server_pid)
    marks["curve"] = curve
    if result is None:
        tail = err_path.read_text(errors="replace")[-2000:]
        result = {"error": f"load generator gave no result (exit {proc.returncode})\n{tail}"}
    return result, marks


def run_once(
    target: Target,
    scenario: str,
    params: dict[str, Any],
    rep: int,
    plan: tuple[set[int] | None, set[int] | None],
    env: dict[str, str],
    logdir: Path,
    deflate: bool,
) -> dict[str, Any]:
    server_cpus, loadgen_cpus = plan
    if target.every_cpu and server_cpus is not None and loadgen_cpus is not None:
        server_cpus = server_cpus | loadgen_cpus
    server = Server(target, server_cpus, env, logdir)
    try:
        ready_s = server.wait_ready()
        auth = target.auth
        if auth and "jwt" in auth:
            jwt = dict(auth["jwt"])
            jwt["secret"] = env[jwt.pop("secret_env", "ENGINE_JWT_SECRET")]
            auth = {"jwt": jwt}
        config = {
            "scenario": scenario,
            "host": "127.0.0.1",
            "port": server.port,
            "nsp": target.nsp,
            "auth": auth,
            "deflate": deflate,
            **params,
        }
        result, marks = run_loadgen(
            config, loadgen_cpus, server, logdir, f"{target.name}-{scenario}-{rep}"
        )
        alive = server.proc.poll() is None
    finally:
        rc = server.stop()
    gc_window = ("window_start", "window_end")
    if not all(k in marks for k in gc_window):
        gc_window = ("start", "end")
    pauses = server.gc_pauses(marks[gc_window[0]]["t"], marks[gc_window[1]]["t"])
    # the whole run too: set-up and the clients' mass disconnect at the end
    run_pauses = server.gc_pauses(marks["start"]["t"], marks["end"]["t"])
    run: dict[str, Any] = {
        "target": target.name,
        "scenario": scenario,
        "rep": rep,
        "ready_s": round(ready_s, 3),
        "server_exit": rc,
    }
    run.update({k: v for k, v in result.items() if k not in ("type", "scenario")})
    figures: dict[str, Any] = dict(result.get("figures") or {})
    srv: dict[str, Any] = {
        "rss_start_kb": marks["start"]["rss_kb"],
        "rss_end_kb": marks["end"]["rss_kb"],
    }
    window = ("window_start", "window_end")
    if not all(k in marks for k in window):
        window = ("rss_before", "rss_after")
    if not all(k in marks for k in window):
        starts = [k for k in marks if k.startswith("phase_start:")]
        ends = [k for k in marks if k.startswith("phase_end:")]
        if starts and ends:
            window = (starts[0], ends[-1])  # f, g: from the first phase to the last
    interference: dict[str, float | None] = {}
    if all(k in marks for k in window):
        w0, w1 = marks[window[0]], marks[window[1]]
        srv["cpu_fraction"] = round((w1["cpu_s"] - w0["cpu_s"]) / max(1e-9, w1["t"] - w0["t"]), 3)
        lg = (result.get("loadgen_cpu") or {}).get("cpu_fraction")
        interference = {
            "server_cpu_foreign": foreign_load(w0, w1, server_cpus, srv["cpu_fraction"]),
            "loadgen_cpu_foreign": foreign_load(w0, w1, loadgen_cpus, lg),
        }
    if "rss_before" in marks and "rss_after" in marks:
        before, after = marks["rss_before"]["rss_kb"], marks["rss_after"]["rss_kb"]
        open_conns = int(marks["rss_after"].get("open", 0) or 0)
        srv.update({"rss_before_kb": before, "rss_after_kb": after, "open_at_sample": open_conns})
        figures["rss_per_conn_kb"] = (after - before) / open_conns if open_conns else None
        figures["rss_after_mb"] = after / 1024
    # Collector pauses in the window (gc.callbacks in the server process, bench.launch)
    if server.gc_path.exists():
        ms = sorted(p[1] for p in pauses)
        figures["gc_max_ms"] = ms[-1] if ms else 0.0
        figures["gc_pauses_over_5ms"] = sum(1 for m in ms if m > 5.0)
        srv["gc"] = {
            "collections": len(ms),
            "total_ms": round(sum(ms), 3),
            "by_generation": {g: sum(1 for p in pauses if p[2] == g) for g in (0, 1, 2)},
            "max_ms": ms[-1] if ms else 0.0,
            "over_1ms": sum(1 for m in ms if m > 1.0),
            "run_max_ms": max((p[1] for p in run_pauses), default=0.0),
            "run_over_5ms": sum(1 for p in run_pauses if p[1] > 5.0),
        }
    # Phases (f, g): server CPU per phase; per refusal / per frame from the difference to quiet
    phases: dict[str, dict[str, Any]] = {}
    for name, m0 in marks.items():
        if name.startswith("phase_start:") and f"phase_end:{name[12:]}" in marks:
            m1 = marks[f"phase_end:{name[12:]}"]
            wall = max(1e-9, m1["t"] - m0["t"])
            c1, c0 = m1.get("counters") or {}, m1.get("counters0") or {}
            delta = {k: c1[k] - c0.get(k, 0) for k in c1 if isinstance(c1[k], (int, float))}
            phases[name[12:]] = {
                "cpu_fraction": (m1["cpu_s"] - m0["cpu_s"]) / wall,
                "wall_s": wall,
                "counters": delta,
                "gc_max_ms": max((p[1] for p in server.gc_pauses(m0["t"], m1["t"])), default=0.0),
            }
    if phases:
        srv["phases"] = phases
        quiet = phases.get("quiet", {}).get("cpu_fraction")
        for name, ph in phases.items():
            figures[f"cpu_{name}"] = ph["cpu_fraction"]
            c = ph["counters"]
            if name == "flood":
                refusals = c.get("refused_http", 0) + c.get("refused_reset", 0)
                figures["refusals_per_s"] = refusals / ph["wall_s"]
                figures["accepted_in_flood"] = c.get("accepted", 0)
                if refusals and quiet is not None:
                    figures["cpu_ms_per_refusal"] = (
                        (ph["cpu_fraction"] - quiet) * ph["wall_s"] * 1000 / refusals
                    )
            if name.startswith("frames_") and c.get("frames") and quiet is not None:
                mb = round(int(name[7:]) / 1048576)
                figures[f"{mb}MiB_frames_per_s"] = c["frames"] / ph["wall_s"]
                figures[f"{mb}MiB_cpu_ms_per_frame"] = (
                    (ph["cpu_fraction"] - quiet) * ph["wall_s"] * 1000 / c["frames"]
                )
    # Soak (s): the RSS curve and the per-client tables before, at the end, after the clients
    if marks.get("curve"):
        first = marks.get("soak_first_minute") or marks["curve"][0]
        end = marks.get("soak_end") or marks["curve"][-1]
        srv["soak_curve"] = [
            {"t_s": m.get("t_s"), "rss_mb": round(m["rss_kb"] / 1024, 1), "open": m.get("open")}
            for m in marks["curve"]
        ]
        figures["rss_first_sample_mb"] = first["rss_kb"] / 1024
        figures["rss_end_mb"] = end["rss_kb"] / 1024
        figures["rss_growth_pct"] = 100.0 * (end["rss_kb"] - first["rss_kb"]) / first["rss_kb"]
        if "soak_after_leave" in marks:
            figures["rss_after_leave_mb"] = marks["soak_after_leave"]["rss_kb"] / 1024
        base_t = (marks.get("soak_baseline") or {}).get("tables") or {}
        after_t = (marks.get("soak_after_leave") or {}).get("tables") or {}
        grown: dict[str, int] = {}
        base_flat = {f"{o.split('@')[0]}.{k}": v for o, f in base_t.items() for k, v in f.items()}
        for o, f in after_t.items():
            for k, v in f.items():
                key = f"{o.split('@')[0]}.{k}"
                if v > base_flat.get(key, 0):
                    grown[key] = v - base_flat.get(key, 0)
        srv["tables_baseline"] = base_t
        srv["tables_end"] = (marks.get("soak_end") or {}).get("tables")
        srv["tables_after_leave"] = after_t
        srv["tables_grown"] = grown
        figures["tables_grown"] = len(grown)
    # Throughput per second of server CPU: robust to other processes stealing the server's core.
    busy = srv.get("cpu_fraction")
    for rate, per_cpu in (
        ("msgs_per_s", "msgs_per_server_cpu_s"),
        ("connects_per_s", "connects_per_server_cpu_s"),
    ):
        if figures.get(rate) is not None and busy:
            figures[per_cpu] = figures[rate] / busy
    run["figures"] = figures
    run["server"] = srv
    reasons = []
    if "error" in result:
        reasons.append("error: " + str(result["error"]).splitlines()[0])
    cpu = (result.get("loadgen_cpu") or {}).get("cpu_fraction")
    if cpu is not None and cpu > LOADGEN_CPU_LIMIT:
        reasons.append(
            f"load generator saturated ({cpu:.0%} of one core > "
            f"{LOADGEN_CPU_LIMIT:.0%}): the figures measure the generator"
        )
    if not alive:
        reasons.append(f"server died during the run (exit {rc})")
    run["valid"] = not reasons
    run["invalid_reasons"] = reasons
    # Other processes on the benchmark CPUs (another job on a shared machine) skew the figures:
    # flagged as a warning, not as invalid (the orchestrator's own polling is a few %).
    run["interference"] = interference
    run["warnings"] = [
        f"{k.replace('_cpu_foreign', '')} CPU {v:.0%} busy with other processes"
        for k, v in interference.items()
        if v is not None and v > FOREIGN_LOAD_LIMIT
    ]
    attempted = (result.get("detail") or {}).get("attempted")
    open_at_sample = srv.get("open_at_sample")
    if attempted and open_at_sample is not None and open_at_sample < 0.99 * attempted:
        run["warnings"].append(
            f"only {open_at_sample} of {attempted} connections open at the RSS sample: "
            "rss_per_conn_kb includes the cost of the failed ones"
        )
    return run


# ---------------------------------------------------------------------------------------------
# report


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(
    runs: list[dict[str, Any]],
    targets: list[str],
    scenarios: list[str],
    baselines: Sequence[str] = BASELINES,
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for sc in scenarios:
        sc_runs = [r for r in runs if r["scenario"] == sc]
        names: list[str] = []
        for r in sc_runs:
            for k in r.get("figures", {}):
                if k not in names:
                    names.append(k)
        per_target: dict[str, Any] = {}
        for t in targets:
            tr = [r for r in sc_runs if r["target"] == t]
            stats: dict[str, Any] = {}
            for k in names:
                vals = [r["figures"][k] for r in tr if r.get("figures", {}).get(k) is not None]
                if vals:
                    stats[k] = {
                        "median": statistics.median(vals),
                        "min": min(vals),
                        "max": max(vals),
                        "n": len(vals),
                    }
            cpu = [r["loadgen_cpu"]["cpu_fraction"] for r in tr if r.get("loadgen_cpu")]
            scpu = [
                r["server"]["cpu_fraction"] for r in tr if "cpu_fraction" in r.get("server", {})
            ]
            per_target[t] = {
                "figures": stats,
                "runs": len(tr),
                "invalid_runs": sum(1 for r in tr if not r["valid"]),
                "noisy_runs": sum(1 for r in tr if r.get("warnings")),
                "loadgen_cpu_max": max(cpu) if cpu else None,
                "server_cpu_median": statistics.median(scpu) if scpu else None,
            }
        ratios: dict[str, Any] = {}
        for baseline in baselines:
            base = per_target.get(baseline, {}).get("figures", {})
            if not base:
                continue
            for t in targets:
                if t in baselines or not per_target[t]["runs"]:
                    continue
                mine = per_target[t]["figures"]
                ratios[f"{t}/{baseline}"] = {
                    k: (
                        mine[k]["median"] / base[k]["median"]
                        if k in mine and k in base and base[k]["median"]
                        else None
                    )
                    for k in names
                }
        summary[sc] = {
            "figures": names,
            "better": {k: SCENARIOS[sc]["better"].get(k, "lower") for k in names},
            "targets": per_target,
            "ratios": ratios,
        }
    return summary


def render(
    summary: dict[str, Any],
    params: dict[str, dict[str, Any]],
    targets: list[str],
) -> str:
    out: list[str] = []
    for sc, s in summary.items():
        out.append("")
        out.append(f"({sc}) " + SCENARIOS[sc]["title"].format(**params[sc]))
        cols = [t for t in targets if s["targets"][t]["runs"]]
        ratio_cols = list(s["ratios"])
        header = ["figure", "better"] + [f"{t} median [min-max]" for t in cols] + ratio_cols
        rows = [header]
        for k in s["figures"]:
            row = [k, s["better"][k]]
            for t in cols:
                f = s["targets"][t]["figures"].get(k)
                row.append(f"{_fmt(f['median'])} [{_fmt(f['min'])}-{_fmt(f['max'])}]" if f else "-")
            for rc in ratio_cols:
                r = s["ratios"][rc].get(k)
                row.append(f"{r:.2f}x" if r is not None else "-")
            rows.append(row)
        cpu_row = ["loadgen CPU (max)", ""]
        srv_row = ["server CPU (median)", ""]
        inv_row = ["runs (invalid, noisy)", ""]
        for t in cols:
            st = s["targets"][t]
            c = st["loadgen_cpu_max"]
            cpu_row.append(f"{c:.0%}" if c is not None else "-")
            sc_ = st["server_cpu_median"]
            srv_row.append(f"{sc_:.0%}" if sc_ is not None else "-")
            inv_row.append(f"{st['runs']} ({st['invalid_runs']}, {st['noisy_runs']})")
        rows += [
            cpu_row + [""] * len(ratio_cols),
            srv_row + [""] * len(ratio_cols),
            inv_row + [""] * len(ratio_cols),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for n, r in enumerate(rows):
            out.append(
                "  "
                + "  ".join(
                    c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)
                )
            )
            if n == 0:
                out.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# main


def ensure_loadgen() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH: the load generator needs Node >= 18"
    if not (BENCH / "node_modules" / "ws" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            return "bench/node_modules is missing and npm is not on PATH: run `npm ci` in bench/"
        print("installing the load generator's packages: npm ci (in bench/)", flush=True)
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BENCH)
        if proc.returncode != 0:
            return "`npm ci` in bench/ failed"
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: short durations, fewer clients, 1 repetition",
    )
    # the workers scaling targets run only when named (--targets engine-w1,engine-w2)
    default_targets = [name for name, target in TARGETS.items() if target.workers == 1]
    p.add_argument("--targets", default=",".join(default_targets))
    p.add_argument("--scenarios", default=None, help=f"default {DEFAULT_SCENARIOS}")
    p.add_argument(
        "--soak",
        action="store_true",
        help="the soak (scenario s, 10 min; with --quick 20 s) instead of the default scenarios",
    )
    p.add_argument("--repeat", type=int, default=None, help="repetitions (default 3, --quick 1)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="S.KEY=VALUE",
        help="override a scenario parameter, e.g. a.durationS=10 (value is JSON)",
    )
    p.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="TARGET=SPEC",
        help="CONNECT auth per target: none | jwt | jwt:role+role | json:{...}",
    )
    p.add_argument(
        "--no-deflate",
        action="store_true",
        help="do not offer permessage-deflate (socket.io-client offers it)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE:KEY=VALUE[,KEY=VALUE]",
        help="an extra target: BASE's server with extra environment variables (knob A/B runs)",
    )
    p.add_argument("--results-dir", default=str(RESULTS))
    p.add_argument(
        "--no-protocol-check",
        action="store_true",
        help="skip bench/loadgen/check_protocol.js before the runs",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for item in args.variant:
        name, _, spec = item.partition("=")
        base, _, assignments = spec.partition(":")
        if not name or base not in TARGETS:
            print(f"--variant {item!r}: expected NAME=BASE:KEY=VALUE,...", file=sys.stderr)
            return 2
        extra = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
        TARGETS[name] = dataclasses.replace(
            TARGETS[base], name=name, env={**TARGETS[base].env, **extra}
        )
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    scen_arg = args.scenarios or ("s" if args.soak else DEFAULT_SCENARIOS)
    scenarios = [s.strip() for s in scen_arg.split(",") if s.strip()]
    for t in targets:
        if t not in TARGETS:
            print(f"unknown target {t!r}; known: {', '.join(TARGETS)}", file=sys.stderr)
            return 2
    for s in scenarios:
        if s not in SCENARIOS:
            print(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
    repeat = args.repeat or (1 if args.quick else 3)
    mode = "quick" if args.quick else "full"
    params = {s: dict(SCENARIOS[s][mode]) for s in SCENARIOS}
    for item in args.set:
        key, _, value = item.partition("=")
        sc, _, name = key.partition(".")
        if sc not in params or not name or not value:
            print(f"--set {item!r}: expected S.KEY=VALUE with S in a-g or s", file=sys.stderr)
            return 2
        try:
            params[sc][name] = json.loads(value)
        except json.JSONDecodeError:
            params[sc][name] = value
    for item in args.auth:
        name, _, spec = item.partition("=")
        if name not in TARGETS:
            print(f"--auth {item!r}: unknown target", file=sys.stderr)
            return 2
        TARGETS[name].auth = parse_auth(spec)

    problem = ensure_loadgen()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.no_protocol_check:
        chk = subprocess.run(
            ["node", str(CHECK_PROTOCOL)], cwd=BENCH, capture_output=True, text=True, timeout=60
        )
        if chk.returncode != 0:
            print(chk.stdout + chk.stderr, file=sys.stderr)
            print(
                "error: the load generator's frames differ from socket.io-client's", file=sys.stderr
            )
            return 2
        print("protocol check: loadgen frames byte-identical to socket.io-client", flush=True)

    facts = machine_facts()  # before pinning ourselves to one CPU
    raise_nofile()
    facts["nofile_limit_runs"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    server_cpus, loadgen_cpus, pinning = cpu_plan()
    if loadgen_cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, loadgen_cpus)  # keep the orchestrator off the server's CPU
    env = dict(os.environ)
    env.setdefault("ENGINE_JWT_SECRET", JWT_SECRET_DEFAULT)
    env.setdefault("ENGINE_ADMIN_TOKEN", ADMIN_TOKEN_DEFAULT)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    logdir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    # production.toml's security JSONL sink defaults to /var/log/engine: keep it with the logs
    env.setdefault("ENGINE_SECURITY_LOG", str(logdir / "security.jsonl"))
    started = dt.datetime.now(dt.UTC)
    print(
        f"{mode} run: targets {','.join(targets)}; scenarios {','.join(scenarios)}; "
        f"{repeat} repetition(s); {pinning}; logs in {logdir}",
        flush=True,
    )

    unavailable: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    for sc in scenarios:
        for rep in range(1, repeat + 1):
            for t in targets:  # interleaved: A B C A B C ...
                if t in unavailable:
                    continue
                # production limits refuse the bench load: those targets run f and g only
                if TARGETS[t].production_limits != bool(SCENARIOS[sc].get("production_limits")):
                    continue
                label = f"({sc}) rep {rep}/{repeat} {t}"
                print(f"  {label} ...", end="", flush=True)
                t0 = time.monotonic()
                try:
                    run = run_once(
                        TARGETS[t],
                        sc,
                        params[sc],
                        rep,
                        (server_cpus, loadgen_cpus),
                        env,
                        logdir,
                        deflate=not args.no_deflate,
                    )
                except TargetUnavailable as exc:
                    unavailable[t] = str(exc)
                    print(
                        f" UNAVAILABLE\n\ntarget {t!r} cannot be benchmarked: {exc}\n"
                        f"(skipping {t} for the rest of this invocation)\n",
                        flush=True,
                    )
                    continue
                runs.append(run)
                figs = ", ".join(f"{k}={_fmt(v)}" for k, v in run["figures"].items())
                cpu = (run.get("loadgen_cpu") or {}).get("cpu_fraction")
                state = "ok" if run["valid"] else "INVALID: " + "; ".join(run["invalid_reasons"])
                if run["warnings"]:
                    state += " (noisy: " + "; ".join(run["warnings"]) + ")"
                print(
                    f" {time.monotonic() - t0:.1f} s  {figs}  [loadgen cpu {cpu:.0%}] {state}"
                    if cpu is not None
                    else f" {state}",
                    flush=True,
                )

    ran_targets = [t for t in targets if t not in unavailable]
    summary = summarize(runs, ran_targets, scenarios)
    vers = versions()
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v))
    print(
        f"machine: {facts['cores']} cores ({pinning}), {facts['cpu_model']}, "
        f"kernel {facts['kernel']}, {facts['mem_total_mb']} MB"
    )
    print(render(summary, params, ran_targets))
    for t, why in unavailable.items():
        print(f"\n{t}: not benchmarked: {why.splitlines()[0]}")

    doc = {
        "started": started.isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "mode": mode,
        "repeat": repeat,
        "targets": targets,
        "scenarios": scenarios,
        "params": {s: params[s] for s in scenarios},
        "pinning": pinning,
        "deflate_offered": not args.no_deflate,
        "loadgen_cpu_limit": LOADGEN_CPU_LIMIT,
        "versions": vers,
        "machine": facts,
        "unavailable": unavailable,
        "target_argv": {t: TARGETS[t].argv(0) for t in targets},
        "runs": runs,
        "summary": summary,
        "logs": str(logdir),
    }
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / (started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(path)
    print(f"\nresults: {path}")
    invalid = [r for r in runs if not r["valid"]]
    if invalid:
        print(f"{len(invalid)} run(s) invalid (see invalid_reasons in the JSON)")
    noisy = [r for r in runs if r.get("warnings")]
    if noisy:
        print(
            f"{len(noisy)} run(s) noisy: other processes used the benchmark CPUs "
            "(see interference in the JSON); rerun on a quiet machine for trustworthy figures"
        )
    if unavailable:
        return 3
    return 1 if invalid or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
