"""Smoke test of the benchmark harness: protocol check, then bare and engine-dev, quickly.

Runs bench.smoke (the load generator's byte-for-byte check against socket.io-client, then
`python -m bench.run --quick` with results in a temporary directory) on the closed-loop echo
(a) and connect-rate (d) scenarios only, to stay well under a minute; `npm ci` in bench/ runs
automatically when bench/node_modules is missing. The figures are not checked, only that every
target starts and every run is valid.
"""

from __future__ import annotations

import shutil

import pytest

from bench.smoke import smoke

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="the benchmark load generator needs Node >= 18 with npm (scripts/test installs them)",
)


@pytest.mark.timeout(110)
def test_bench_smoke_bare_and_engine_dev() -> None:
    assert smoke(["bare", "engine-dev"], scenarios="a,d") == 0
