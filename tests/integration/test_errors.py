"""Handler failures: the client gets `{code: "internal", message, error_id}`, the log has the
same error_id with the traceback, other clients notice nothing; the error budget disconnects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import serving
from tests.integration.lifecycle import watched

pytestmark = pytest.mark.anyio

BYSTANDERS = 5


def errors_profile(errors: str = "") -> str:
    return f"""
[engine]
name = "errors"
environment = "development"

[namespaces."/"]
handler = "tests.lifecycle_handlers:LifecycleNamespace"
events = ["echo", "fail"]

{errors}
"""


def internal(answer: Any) -> dict[str, Any]:
    assert isinstance(answer, dict), answer
    error = answer["error"]
    assert isinstance(error, dict)
    assert error["code"] == "internal"
    assert error["message"] == "the handler failed"
    return error


async def test_a_failing_handler_disturbs_no_one_and_logs_its_error_id(
    write_profile: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="engine.server")
    async with serving(write_profile(errors_profile())) as running:
        failing, failing_inbox = watched("error")
        await failing.connect(running.url, transports=["websocket"])
        others = [watched() for _ in range(BYSTANDERS)]
        for client, _ in others:
            await client.connect(running.url, transports=["websocket"])
        answers: list[list[Any]] = [[] for _ in others]
        failures: list[dict[str, Any]] = []

        async def bystander(index: int) -> None:
            client = others[index][0]
            for n in range(20):
                answers[index].append(await client.call("echo", [index, n], timeout=5))

        async def fail() -> None:
            for n in range(10):
                failures.append(internal(await failing.call("fail", n, timeout=5)))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(fail)
            for index in range(BYSTANDERS):
                tasks.start_soon(bystander, index)

        for index, got in enumerate(answers):
            assert got == [[index, n] for n in range(20)]
        for client, inbox in others:
            assert client.connected
            assert inbox.names() == ["connect"]
        # no exception text outside a profile that asks for it
        assert all(set(error) == {"code", "message", "error_id"} for error in failures)
        ids = [error["error_id"] for error in failures]
        assert len(set(ids)) == len(ids)
        # the log line carries the same error_id, and the traceback
        logged = {
            record.getMessage()
            for record in caplog.records
            if record.name == "engine.server" and record.levelno == logging.ERROR
        }
        for error_id in ids:
            line = next(m for m in logged if f"error_id={error_id}" in m)
            assert "Traceback (most recent call last)" in line
            assert "RuntimeError: handler failed on purpose" in line
        # without an ack the envelope arrives as an `error` event; the client stays
        await failing.emit("fail", "no ack")
        error = await failing_inbox.wait("error")
        assert error["code"] == "internal"
        assert any(f"error_id={error['error_id']}" in r.getMessage() for r in caplog.records)
        assert failing.connected
        for client, _ in [(failing, None), *others]:
            await client.disconnect()


async def test_development_profile_may_expose_the_exception_text(
    write_profile: Callable[..., Path],
) -> None:
    profile = errors_profile("[errors]\nexpose_exception_text = true\n")
    async with serving(write_profile(profile)) as running:
        client, _ = watched()
        await client.connect(running.url, transports=["websocket"])
        error = internal(await client.call("fail", 7, timeout=5))
        assert error["exception"] == "RuntimeError: handler failed on purpose: 7"
        assert len(error["error_id"]) == 16
        await client.disconnect()


async def test_error_budget_disconnects_as_declared(write_profile: Callable[..., Path]) -> None:
    profile = errors_profile("[errors.budget]\nmax_errors = 3\nwindow_seconds = 60\n")
    async with serving(write_profile(profile)) as running:
        careless, inbox = watched("error")
        await careless.connect(running.url, transports=["websocket"])
        bystander, bystander_inbox = watched("error")
        await bystander.connect(running.url, transports=["websocket"])
        # three errors are within the budget: handler failures and refusals alike
        internal(await careless.call("fail", 1, timeout=5))
        refused = await careless.call("undeclared", timeout=5)
        assert refused["error"]["code"] == "unknown_event"
        internal(await careless.call("fail", 2, timeout=5))
        assert await careless.call("echo", "still here", timeout=5) == "still here"
        assert bystander_inbox.all("error") == []
        # the fourth is one too many: answered, then told why, then disconnected
        internal(await careless.call("fail", 3, timeout=5))
        await inbox.wait("disconnect")
        assert [e["code"] for e in inbox.all("error")] == ["error_budget_exceeded"]
        # the budget is the connection's own
        assert await bystander.call("echo", 1, timeout=5) == 1
        internal(await bystander.call("fail", 1, timeout=5))
        assert bystander.connected
        await bystander.disconnect()
