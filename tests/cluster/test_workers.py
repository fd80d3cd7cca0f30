"""`[server] workers = 2`: a real supervisor process, real workers sharing a port, real Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from engine.cluster.options import ClusterOptions
from engine.cluster.workers import node_identity
from tests.cluster.live import (
    clients,
    cluster_profile,
    get_json,
    ready,
    start_engine,
    stop,
    wait_until,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def free_port_run(length: int) -> int:
    """A port P such that P .. P + length - 1 are free on 127.0.0.1 (at the time of asking)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + length > 65535:
            continue
        taken = []
        try:
            for port in range(base, base + length):
                sock = socket.socket()
                taken.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
        return base
    raise RuntimeError("no run of free ports")


def test_node_identity() -> None:
    named = ClusterOptions(node_id="edge-1")
    assert node_identity(named, {}) == "edge-1"
    assert node_identity(named, {"ENGINE_WORKER_INDEX": "2"}) == "edge-1.w2"
    assert node_identity(ClusterOptions(), {}).endswith(f":{os.getpid()}")


async def test_two_workers_share_the_port_form_a_cluster_restart_and_drain(
    redis_server: RedisServer, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    port = free_port_run(3)
    text = cluster_profile(
        redis_server.url,
        node_id="w",
        server={"workers": 2, "port": port, "transports": ["websocket"]},
    )
    profile = write_profile(text)
    log = tmp_path / "supervisor.log"
    supervisor = start_engine(profile, f"127.0.0.1:{port}", log)
    seen_pids: set[int] = set()
    shared = f"http://127.0.0.1:{port}"
    worker_urls = {i: f"http://127.0.0.1:{port + i}" for i in (1, 2)}
    try:
        for url in worker_urls.values():
            await ready(url)
        pids = {
            i: (await get_json(u + "/engine/api/stats"))["node"]["pid"]
            for i, u in worker_urls.items()
        }
        seen_pids.update(pids.values())
        for i, url in worker_urls.items():
            stats = await get_json(url + "/engine/api/stats")
            assert stats["node"]["id"] == f"w.w{i}"
            await wait_until(
                lambda url=url: _alive(url, {"w.w1", "w.w2"}), what="workers see each other"
            )

        async with clients(16) as cs:
            for client in cs:
                await client.connect(shared)
            counts = {
                i: (await get_json(u + "/engine/api/stats"))["summary"]["connections"]
                for i, u in worker_urls.items()
            }
            print(f"\nworkers: connections per worker over the shared port: {counts}")
            assert sum(counts.values()) == 16
            assert all(n > 0 for n in counts.values()), counts
            # one cluster: a shout on any worker reaches every client once
            await cs[0].sio.emit("shout", "hi")
            await wait_until(lambda: all(c.received["shouted"] == 1 for c in cs), what="shout")

            # kill -9 worker 1: the supervisor starts it again; its clients reconnect
            os.kill(pids[1], signal.SIGKILL)

            async def restarted() -> bool:
                try:
                    stats = await get_json(worker_urls[1] + "/engine/api/stats", limit=1)
                except Exception:
                    return False
                seen_pids.add(stats["node"]["pid"])
                return bool(stats["node"]["pid"] != pids[1])

            await wait_until(restarted, within=30, what="worker 1 restarted")
            await wait_until(lambda: all(c.connected for c in cs), within=30, what="reconnects")
            assert "worker 1 (pid" in log.read_text()
            assert "restarting" in log.read_text()

            # SIGHUP reloads every worker (a changed profile: a new config hash)
            before = (await get_json(worker_urls[2] + "/engine/api/stats"))["config_hash"]
            profile.write_text(text.replace('name = "cluster-live"', 'name = "cluster-reloaded"'))
            supervisor.send_signal(signal.SIGHUP)
            for url in worker_urls.values():
                await wait_until(
                    lambda url=url: _hash_changed(url, before), within=15, what="reload"
                )
            assert supervisor.poll() is None

        # SIGTERM: every worker drains, the supervisor exits 0
        supervisor.send_signal(signal.SIGTERM)
        code = await anyio.to_thread.run_sync(lambda: supervisor.wait(30))
        assert code == 0, log.read_text()[-3000:]
    finally:
        if supervisor.poll() is None:
            stop(supervisor)
        for pid in seen_pids:  # workers outliving a failed test's supervisor
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _alive(url: str, expected: set[str]) -> bool:
    stats = await get_json(url + "/engine/api/stats")
    return {n["id"] for n in stats["cluster"]["nodes"] if n["alive"]} == expected


async def _hash_changed(url: str, before: str) -> bool:
    try:
        stats = await get_json(url + "/engine/api/stats", limit=1)
    except Exception:
        return False
    return bool(stats["config_hash"] != before)
