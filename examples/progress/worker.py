"""A worker process publishing a task's progress through the engine's publish API.

    python examples/progress/worker.py export-42
"""

from __future__ import annotations

import sys
import time

from engine.publish import Publisher

ENGINE = "http://127.0.0.1:8000"
TOKEN = "example-publish-token-0001"  # the profile's [publish] token


def main(task_id: str) -> int:
    publisher = Publisher(ENGINE, token=TOKEN)
    publisher.progress(task_id, owner="alice", percent=0, message="starting")
    for step in range(1, 101):
        time.sleep(0.1)  # the work
        task = publisher.progress(task_id, percent=step, message=f"row {step * 1000}")
        if task["cancel_requested"]:
            publisher.progress(task_id, status="cancelled", message="stopped on request")
            return 1
    publisher.complete(task_id, result={"url": f"/files/{task_id}.csv"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "export-42"))
