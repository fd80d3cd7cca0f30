"""A real `redis-server` on a free loopback port, for cluster and state-store tests.

Readiness is the server's own "Ready to accept connections" line, not a polling loop; `stop`
and `start` keep the port so a test can stage a broker outage and its recovery.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest


def _drain(stream: IO[str]) -> None:
    with stream:
        try:
            for _ in stream:
                pass
        except (OSError, ValueError):
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None
        self.drainer: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (scripts/system-deps installs it)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        for line in self.process.stdout:  # blocks per line; redis prints readiness promptly
            if "Ready to accept connections" in line:
                # keep draining the log so a chatty server never blocks on a full pipe
                self.drainer = threading.Thread(
                    target=_drain, args=(self.process.stdout,), daemon=True
                )
                self.drainer.start()
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not become ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.drainer is not None:
            self.drainer.join(timeout=10)
            self.drainer = None
        elif self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
