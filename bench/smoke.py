"""Smoke test of the benchmark harness, for a test or CI to call.

    from bench.smoke import smoke
    assert smoke(["bare"]) == 0

Runs the load generator's protocol check (byte-for-byte against socket.io-client), then
``python -m bench.run --quick`` for the given targets, writing results to a temporary directory
(nothing lands in bench/results/). Returns 0 when every target started and every run produced
valid figures; the non-zero codes are bench.run's (1: invalid runs, 2: setup problem such as a
missing node or npm, 3: a target could not start). Takes ~30 s per target.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence

from bench import run


def smoke(targets: Sequence[str] = ("bare",), scenarios: str = "a,b,c,d,e") -> int:
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        return run.main(
            [
                "--quick",
                "--targets",
                ",".join(targets),
                "--scenarios",
                scenarios,
                "--results-dir",
                tmp,
            ]
        )


if __name__ == "__main__":
    sys.exit(smoke(sys.argv[1].split(",") if len(sys.argv) > 1 else ("bare",)))
