"""End to end: two real engine nodes behind a real HAProxy / nginx configured by
`engine lb-config`; python-socketio clients connect through the balancer over WebSocket and
long-polling, emit and get their ack. Only 127.0.0.1 is used."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
import socketio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from tests.cluster.support import binary, nginx_args
from tests.conftest import PYTHON, serving, subprocess_env

pytestmark = pytest.mark.anyio

NODE = """
[engine]
name = "lb-e2e"
environment = "development"

[server]
shutdown_grace_seconds = 1
# a polling client's disconnect waits for its held GET: keep that short
ping_interval_seconds = 2
ping_timeout_seconds = 2
trusted_proxies = ["127.0.0.0/8"]

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def lb_config(tmp_path: Path, balancer: str, fmt: str, listen: str) -> Path:
    """Run the real `engine lb-config` on a profile extending the nodes' profile."""
    profile = tmp_path / "lb.toml"
    profile.write_text(f'extends = "node.toml"\n\n[cluster.balancer]\n{balancer}')
    result = await anyio.run_process(
        [PYTHON, "-m", "engine", "lb-config", str(profile), "--format", fmt, "--listen", listen],
        env=subprocess_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    config = tmp_path / f"{fmt}.conf"
    config.write_bytes(result.stdout)
    return config


async def wait_for_line(process: Process, text: str) -> None:
    """Read the process's stderr until a line contains `text` (it is listening by then)."""
    assert process.stderr is not None
    seen = ""
    with anyio.fail_after(15):
        async for chunk in TextReceiveStream(process.stderr):
            seen += chunk
            if text in seen:
                return
    raise AssertionError(f"{text!r} never appeared: {seen}")


@asynccontextmanager
async def running(command: list[str], ready: str) -> AsyncIterator[Process]:
    async with await anyio.open_process(command, stdout=None) as process:
        try:
            await wait_for_line(process, ready)
            yield process
        finally:
            process.terminate()
            with anyio.fail_after(10):
                await process.wait()


async def round_trips(url: str) -> None:
    """Connect over each transport through the balancer, emit several times, get each ack."""
    for transport in ("websocket", "polling"):
        # The cookie jar must accept cookies from an IP address (the sticky cookie).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            client = socketio.AsyncClient(reconnection=False, http_session=http)
            await client.connect(url, transports=[transport], wait_timeout=10)
            try:
                for n in range(5):
                    ack = await client.call("echo", {"n": n, "via": transport}, timeout=10)
                    assert ack == {"n": n, "via": transport}
                assert client.transport() == transport
            finally:
                await client.disconnect()


async def test_haproxy_with_cookie_stickiness(tmp_path: Path) -> None:
    haproxy = binary("haproxy")
    (tmp_path / "node.toml").write_text(NODE)
    async with serving(tmp_path / "node.toml") as one, serving(tmp_path / "node.toml") as two:
        balancer = (
            'strategy = "round_robin"\nsticky = "cookie"\ncheck_interval_seconds = 0.5\n'
            f'nodes = [{{ address = "127.0.0.1:{one.port}" }}, '
            f'{{ address = "127.0.0.1:{two.port}" }}]\n'
        )
        port = free_port()
        config = await lb_config(tmp_path, balancer, "haproxy", f"127.0.0.1:{port}")
        async with running([haproxy, "-W", "-db", "-f", str(config)], "Loading success"):
            await round_trips(f"http://127.0.0.1:{port}")


async def test_nginx_with_ip_hash(tmp_path: Path) -> None:
    binary("nginx")
    (tmp_path / "node.toml").write_text(NODE)
    async with serving(tmp_path / "node.toml") as one, serving(tmp_path / "node.toml") as two:
        balancer = (
            'strategy = "ip_hash"\n'
            f'nodes = [{{ address = "127.0.0.1:{one.port}" }}, '
            f'{{ address = "127.0.0.1:{two.port}" }}]\n'
        )
        port = free_port()
        config = await lb_config(tmp_path, balancer, "nginx", f"127.0.0.1:{port}")
        command = nginx_args(config, tmp_path / "prefix")
        command[-1] += " daemon off; error_log stderr notice;"
        async with running(command, "start worker process"):
            await round_trips(f"http://127.0.0.1:{port}")
