"""Helpers of the cluster tests: profiles from tables, and the real haproxy / nginx checks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomli_w

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def binary(name: str) -> str:
    """Absolute path of a system binary (haproxy, nginx live in /usr/sbin); skip if absent."""
    found = shutil.which(name, path=SBIN)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/system-deps installs it)")
    return found


def profile_text(
    cluster: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    environment: str = "production",
) -> str:
    document: dict[str, Any] = {
        "engine": {"name": "cluster-test", "environment": environment},
        "server": {"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8"], **(server or {})},
        "namespaces": {"/": {"events": ["echo"]}},
    }
    if cluster is not None:
        document["cluster"] = cluster
    return tomli_w.dumps(document)


def haproxy_check(config: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "haproxy.cfg"
    path.write_text(config)
    return subprocess.run(
        [binary("haproxy"), "-c", "-q", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def nginx_args(config_path: Path, prefix: Path) -> list[str]:
    """nginx with everything it writes (error log, pid) inside `prefix`."""
    prefix.mkdir(parents=True, exist_ok=True)
    return [
        binary("nginx"),
        "-c",
        str(config_path),
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-g",
        f"pid {prefix / 'nginx.pid'};",
    ]


def nginx_check(config: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "nginx.conf"
    path.write_text(config)
    return subprocess.run(
        [*nginx_args(path, directory / "prefix"), "-t", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
