"""A chain built per event name runs exactly the policies that could refuse that event.

`Chain.for_event` leaves out, at build time, a policy whose `event_scope` does not cover an
event. That is only sound if such a policy allows every request for that event without
looking at anything: here each left-out policy is asked anyway, with arbitrary identities,
payloads and store states, and must allow; and the policies kept run in chain order.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.auth import Identity
from engine.chain import Request
from engine.policies.decision import ALLOW
from engine.profile.build import load_profile
from engine.profile.model import Profile
from engine.progress.task import TASK_EVENTS
from engine.runtime import Runtime
from engine.state import MemoryStateStore

ROOT = Path(__file__).resolve().parents[2]
ENVIRON = {
    "ENGINE_JWT_SECRET": "property-test-secret-of-at-least-32-bytes",
    "ENGINE_ADMIN_TOKEN": "property-test-admin-token",
    "ENGINE_SECURITY_LOG": "/dev/null",
}
PROFILES = (
    ROOT / "profiles" / "production.toml",
    ROOT / "profiles" / "development.toml",
    ROOT / "examples" / "progress" / "profile.toml",
    ROOT / "bench" / "profiles" / "production-bench.toml",
    ROOT / "tests" / "profiles" / "valid" / "full.toml",
)
_LOADED: dict[Path, Profile] = {}


def _runtime(path: Path) -> Runtime:
    if path not in _LOADED:
        _LOADED[path] = load_profile(path, ENVIRON)
    return Runtime.build(_LOADED[path])


def _names(runtime: Runtime) -> list[str]:
    named = {"join_room", "leave_room", *TASK_EVENTS, "other", "echo"}
    for spec in runtime.namespaces.values():
        named.update(spec.events or ())
    return sorted(named)


identities = st.one_of(
    st.none(),
    st.builds(
        Identity,
        user_id=st.one_of(st.none(), st.sampled_from(["u1", "admin", "bench-1"])),
        roles=st.frozensets(st.sampled_from(["admin", "user", "viewer", "moderator", "x"])),
    ),
)
payloads = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.integers(),
        st.dictionaries(st.sampled_from(["room", "task_id", "seq"]), st.text(max_size=8)),
    ),
    max_size=2,
)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_left_out_policies_always_allow(path: Path) -> None:
    runtime = _runtime(path)
    names = _names(runtime)

    @settings(max_examples=60, deadline=None)
    @given(
        st.sampled_from(sorted(runtime.namespaces)),
        st.one_of(st.sampled_from(names), st.text(max_size=12)),
        identities,
        payloads,
        st.integers(0, 40),
    )
    def check(
        namespace: str, event: str, who: Identity | None, args: list[object], joined: int
    ) -> None:
        spec = runtime.namespaces[namespace]
        every = runtime.chain.at("event")
        kept = runtime.chain.for_event(spec, event)
        assert [p for p in every if p in kept] == list(kept)  # a subsequence, in order
        request = Request("event", "10.1.2.3", spec, "sid-1", who, event, args, joined)
        for policy in every:
            if policy in kept:
                continue
            decision = anyio.run(policy.decide, request, MemoryStateStore(), 1000.0)
            assert decision is ALLOW, (policy.name, event)

    check()


def test_a_spec_the_chain_was_not_built_from_runs_every_policy() -> None:
    old = _runtime(PROFILES[0])
    new = _runtime(PROFILES[0])  # same profile, another build: the specs are the same objects
    spec = old.namespaces["/"]
    assert new.chain.for_event(spec, "echo") == new.chain.for_event(new.namespaces["/"], "echo")
    stranger = _runtime(PROFILES[1]).namespaces["/"]
    assert new.chain.for_event(stranger, "echo") == new.chain.at("event")
