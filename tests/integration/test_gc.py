"""The collector settings a profile chooses: `gc_threshold_objects`, `gc_freeze_survivors`."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.transport.fastpath import freeze_survivors
from tests.conftest import serving

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "gc"
environment = "development"

[server]
gc_threshold_objects = 5000
gc_freeze_survivors = {freeze}

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
"""


def test_survivors_of_a_collection_are_frozen_and_the_undo_restores_the_collector() -> None:
    before = list(gc.callbacks)
    thaw = freeze_survivors()
    try:
        frozen = gc.get_freeze_count()
        kept = [[i] for i in range(1000)]  # lists are always tracked; these survive
        gc.collect(0)  # (an automatic collection while allocating freezes them just the same)
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert gc.get_count()[0] < 100  # the young generation is empty again
    finally:
        thaw()
    assert gc.callbacks == before


@pytest.mark.parametrize("freeze", [False, True])
async def test_the_profile_turns_it_on_for_the_server_s_life(
    write_profile: Callable[..., Path], freeze: bool
) -> None:
    before = len(gc.callbacks)
    async with serving(write_profile(PROFILE.format(freeze=str(freeze).lower()))):
        assert gc.get_threshold()[0] == 5000
        assert len(gc.callbacks) == before + (1 if freeze else 0)
    assert len(gc.callbacks) == before
