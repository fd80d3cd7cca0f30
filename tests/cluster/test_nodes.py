"""Three engine nodes (real processes) + real Redis + real HAProxy from `engine lb-config`.

Measures and prints: how HAProxy spread the clients, how long the clients of a killed node
took to be connected again through HAProxy. The numbers go into the closing notes.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import tomli_w

from tests.cluster.live import (
    Client,
    clients,
    get_json,
    ready,
    start_engine,
    start_process,
    stop,
    wait_until,
)
from tests.cluster.support import binary
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio

NODES = ("node1", "node2", "node3")


def fleet_profile(redis_url: str, ports: dict[str, int], listen: str) -> str:
    """One profile for every node: the node id comes from the environment."""
    document: dict[str, Any] = {
        "engine": {"name": "fleet", "environment": "development"},
        "server": {
            "host": "127.0.0.1",
            "port": 8000,
            "transports": ["polling", "websocket"],
            "allowed_origins": ["*"],
            "trusted_proxies": ["127.0.0.0/8"],
            "shutdown_grace_seconds": 10,
            "log_level": "warning",
        },
        "namespaces": {
            "/": {"handler": "tests.cluster.node_handlers:NodeNamespace", "auto_join": ["everyone"]}
        },
        "cluster": {
            "adapter": "redis",
            "url": redis_url,
            "channel": "fleet",
            "node_id": "${NODE_ID:-node}",
            "probe_interval_seconds": 0.25,
            "probe_timeout_seconds": 1.5,
            "balancer": {
                "strategy": "round_robin",
                "sticky": "cookie",
                "listen": listen,
                "check_interval_seconds": 0.25,
                "check_fall": 1,
                "check_rise": 1,
                "nodes": [{"address": f"127.0.0.1:{ports[name]}", "name": name} for name in NODES],
            },
        },
        "monitoring": {"dashboard": {"enabled": True}},
    }
    return tomli_w.dumps(document)


@dataclass
class Fleet:
    directory: Path
    ports: dict[str, int]
    balancer: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    haproxy_log: Path | None = None

    def node_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


@asynccontextmanager
async def fleet(redis: RedisServer, directory: Path) -> AsyncIterator[Fleet]:
    ports = {name: free_port() for name in NODES}
    listen = f"127.0.0.1:{free_port()}"
    profile = directory / "fleet.toml"
    profile.write_text(fleet_profile(redis.url, ports, listen))
    running = Fleet(directory, ports, f"http://{listen}")
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        for name in NODES:
            running.processes[name] = start_engine(
                profile, f"127.0.0.1:{ports[name]}", directory / f"{name}.log", NODE_ID=name
            )
        config = await anyio.run_process(
            [PYTHON, "-m", "engine", "lb-config", str(profile), "--format", "haproxy"],
            cwd=ROOT,
            env=subprocess_env(),
        )
        (directory / "haproxy.cfg").write_bytes(config.stdout)
        for name in NODES:
            await ready(running.node_url(name))
        running.haproxy_log = directory / "haproxy.log"
        # -n: the generated maxconn 50000 needs 100k file descriptors, more than a test box
        # may allow (HAProxy then refuses to start); the rest of the file is used as is
        haproxy = start_process(
            [binary("haproxy"), "-db", "-n", "4096", "-f", str(directory / "haproxy.cfg")],
            running.haproxy_log,
        )
        await ready(running.balancer)
        yield running
    finally:
        if haproxy is not None:
            stop(haproxy)
        for process in running.processes.values():
            stop(process)


async def whoami(client: Client) -> str:
    return str(await client.sio.call("whoami", timeout=5))


async def test_three_nodes_behind_haproxy(redis_server: RedisServer, tmp_path: Path) -> None:
    async with fleet(redis_server, tmp_path) as nodes, clients(30) as ws:
        for name in NODES:  # every node hears every other before clients arrive
            await wait_until(lambda name=name: _alive(nodes.node_url(name)), what="cluster")

        # -- spread: round robin over three nodes ----------------------------------------------
        for client in ws:
            await client.connect(nodes.balancer)
        homes = {client.name: await whoami(client) for client in ws}
        spread = Counter(homes.values())
        print(f"\nnodes: 30 websocket clients through HAProxy (round_robin): {dict(spread)}")
        assert set(spread) == set(NODES)
        assert all(8 <= n <= 12 for n in spread.values()), spread

        async with clients(6, ip_cookies=True) as polling:
            # -- polling through the balancer: the sticky cookie keeps a client on its node ---
            for client in polling:
                await client.connect(nodes.balancer, transports=["polling"])
            polled: Counter[str] = Counter()
            for client in polling:
                answers = {await whoami(client) for _ in range(5)}  # 5 round trips, one node
                assert len(answers) == 1, answers
                polled[answers.pop()] += 1
            print(f"nodes: 6 polling clients (sticky cookie): {dict(polled)}")
            assert len(polled) >= 2

            # -- a broadcast from any node reaches every client exactly once ------------------
            everyone = ws + polling
            senders = {home: next(c for c in ws if homes[c.name] == home) for home in NODES}
            ids = []
            for home, sender in senders.items():
                ids.append(f"{home}-{uuid.uuid4().hex[:6]}")
                await sender.sio.emit("shout", ids[-1])
            await wait_until(
                lambda: all(c.received["shouted"] >= 3 for c in everyone), what="3 broadcasts"
            )
            for client in everyone:  # one more round trip each: a duplicate would be here now
                await whoami(client)
            for client in everyone:
                got = [data for event, data in client.payloads if event == "shouted"]
                assert sorted(got) == sorted(ids), (client.name, got)

        # -- failover: kill -9 node3; its clients reconnect through HAProxy --------------------
        victims = [c for c in ws if homes[c.name] == "node3"]
        killed = anyio.current_time()
        nodes.processes["node3"].kill()
        await wait_until(
            lambda: all(c.disconnected_at is not None for c in victims), what="disconnects"
        )
        await wait_until(
            lambda: all(c.connected and c.connects == 2 for c in victims),
            within=30,
            what="victims reconnected",
        )
        delays = sorted(c.connected_at - killed for c in victims)  # type: ignore[operator]
        print(
            f"nodes: failover of {len(victims)} clients after kill -9: "
            f"median {statistics.median(delays) * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
        )
        new_homes = Counter([await whoami(c) for c in victims])
        assert set(new_homes) <= {"node1", "node2"}, new_homes
        print(f"nodes: where they went: {dict(new_homes)}")

        # -- drain: node2 with an in-flight handler keeps draining; no new client lands there --
        holder = next(c for c in ws if homes[c.name] == "node2" and c.connected)
        await holder.sio.emit("hold", 4)
        await wait_until(lambda: holder.received["holding"], what="the handler started")
        started = time.monotonic()
        nodes.processes["node2"].terminate()
        assert nodes.haproxy_log is not None
        log = nodes.haproxy_log
        await wait_until(lambda: "node2 is DOWN" in log.read_text(), what="HAProxy: node2 down")
        async with clients(9) as late:
            for client in late:
                await client.connect(nodes.balancer)
            late_homes = Counter([await whoami(c) for c in late])
            assert nodes.processes["node2"].poll() is None  # still draining
            print(
                f"nodes: 9 clients during node2's drain "
                f"({time.monotonic() - started:.1f}s in): {dict(late_homes)}"
            )
            assert late_homes == {"node1": 9}
        code = await anyio.to_thread.run_sync(lambda: nodes.processes["node2"].wait(20))
        assert code == 0


async def _alive(url: str) -> bool:
    stats = await get_json(url + "/engine/api/stats")
    return {n["id"] for n in stats["cluster"]["nodes"] if n["alive"]} == set(NODES)
