"""Property: credential extraction follows the order of ``sources``."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.auth import Credentials, extract_credential
from engine.auth.base import SOURCES, Source
from engine.auth.token import constant_time_lookup, token_digest

tokens = st.text(
    alphabet=st.characters(categories=["L", "N"], include_characters="-_.~+/="),
    min_size=1,
    max_size=40,
)

# How a source may be present: a usable value, or one of the forms that count as absent.
PRESENT, ABSENT, EMPTY, UNUSABLE = "present", "absent", "empty", "unusable"


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[tuple[Source, ...], dict[Source, tuple[str, str]]]:
    """A ``sources`` order and, per source, a presence kind and a token."""
    order = draw(st.permutations(SOURCES))
    size = draw(st.integers(min_value=1, max_value=len(SOURCES)))
    states = {
        source: (draw(st.sampled_from([PRESENT, ABSENT, EMPTY, UNUSABLE])), draw(tokens))
        for source in SOURCES
    }
    return tuple(order[:size]), states


def build(states: dict[Source, tuple[str, str]]) -> Credentials:
    payload: dict[str, Any] = {}
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    kind, value = states["auth"]
    if kind != ABSENT:
        payload["token"] = {PRESENT: value, EMPTY: "", UNUSABLE: 12}[kind]
    kind, value = states["header"]
    if kind != ABSENT:
        headers["authorization"] = {
            PRESENT: f"Bearer {value}",
            EMPTY: "Bearer ",
            UNUSABLE: f"Basic {value}",
        }[kind]
    kind, value = states["cookie"]
    if kind != ABSENT:
        cookies["access_token"] = value if kind == PRESENT else ""
    return Credentials(auth_payload=payload or None, headers=headers, cookies=cookies)


@given(scenarios())
def test_first_present_source_in_order_wins(
    scenario: tuple[tuple[Source, ...], dict[Source, tuple[str, str]]],
) -> None:
    order, states = scenario
    found = extract_credential(build(states), order)
    expected = next((s for s in order if states[s][0] == PRESENT), None)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found.source == expected
        assert found.value == states[expected][1].strip()
        assert found.from_cookie is (expected == "cookie")


@given(st.lists(tokens, min_size=1, max_size=20, unique=True), st.data())
def test_lookup_finds_exactly_the_configured_token(
    configured: list[str], data: st.DataObject
) -> None:
    digests = [token_digest(t) for t in configured]
    index = data.draw(st.integers(min_value=0, max_value=len(configured) - 1))
    assert constant_time_lookup(token_digest(configured[index]), digests) == index
    other = data.draw(tokens.filter(lambda t: t not in configured))
    assert constant_time_lookup(token_digest(other), digests) is None
