"""prescan + check accept exactly the payloads a plain recursive reference accepts."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.policies.payload import PayloadLimits, check, prescan
from tests.strategies_policies import json_values, payload_limits


def reference_structure_ok(value: Any, depth: int, limits: PayloadLimits) -> bool:
    """Depth = number of containers enclosing a value, counting itself if it is one."""
    if isinstance(value, dict):
        if depth + 1 > limits.max_depth or len(value) > limits.max_keys:
            return False
        return all(
            len(k) <= limits.max_string_length and reference_structure_ok(v, depth + 1, limits)
            for k, v in value.items()
        )
    if isinstance(value, list):
        if depth + 1 > limits.max_depth or len(value) > limits.max_array_length:
            return False
        return all(reference_structure_ok(v, depth + 1, limits) for v in value)
    if isinstance(value, str):
        return len(value) <= limits.max_string_length
    if isinstance(value, float):
        return not (math.isnan(value) or math.isinf(value))
    return True


def strings_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


def reference_ok(value: Any, raw: str, limits: PayloadLimits) -> bool:
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes or not reference_structure_ok(value, 0, limits):
        return False
    return not any(p.search(s) for s in strings_in(value) for p in limits.deny_patterns)


def encode(value: Any, style: int) -> str:
    if style == 0:
        return json.dumps(value)
    if style == 1:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, indent=1, separators=(" , ", " : "))


@settings(max_examples=400)
@given(st.data(), st.booleans(), st.integers(0, 2))
def test_prescan_and_check_accept_exactly_what_the_reference_accepts(
    data: st.DataObject, long_strings: bool, style: int
) -> None:
    value = data.draw(json_values(long_strings))
    limits = data.draw(payload_limits(long_strings))
    raw = encode(value, style)
    expected = reference_ok(value, raw, limits)
    # Structural limits are exact in prescan alone (deny patterns need the decoded strings).
    structural = len(raw.encode("utf-8", "surrogatepass")) <= limits.max_bytes and (
        reference_structure_ok(value, 0, limits)
    )
    assert (prescan(raw, limits) is None) == structural, raw
    accepted = prescan(raw, limits) is None and check(json.loads(raw), limits) is None
    event(f"accepted={accepted}")
    assert accepted == expected, raw


@settings(max_examples=150)
@given(json_values(), payload_limits())
def test_check_alone_matches_reference_on_decoded_values(value: Any, limits: PayloadLimits) -> None:
    generous = dataclasses.replace(limits, max_bytes=10**9)
    assert (check(value, generous) is None) == reference_ok(value, "", generous)


@st.composite
def with_binary(draw: st.DrawFn) -> Any:
    """Decoded values where some leaves are binary attachments."""
    leaf = st.one_of(st.binary(max_size=24), st.integers(), st.text(max_size=3))
    return draw(
        st.recursive(
            leaf,
            lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=3), c)),
            max_leaves=12,
        )
    )


def binaries_in(value: Any) -> list[bytes]:
    if isinstance(value, dict):
        return [b for v in value.values() for b in binaries_in(v)]
    if isinstance(value, list):
        return [b for v in value for b in binaries_in(v)]
    return [value] if isinstance(value, bytes) else []


@settings(max_examples=150)
@given(with_binary(), payload_limits())
def test_binary_attachments_are_counted_and_bounded(value: Any, limits: PayloadLimits) -> None:
    generous = dataclasses.replace(
        limits,
        max_bytes=10**9,
        max_depth=99,
        max_keys=99,
        max_array_length=99,
        max_string_length=99,
        deny_patterns=(),
    )
    blobs = binaries_in(value)
    expected = not blobs or (
        generous.allow_binary
        and len(blobs) <= generous.max_attachments
        and all(len(b) <= generous.max_attachment_bytes for b in blobs)
    )
    assert (check(value, generous) is None) == expected


@settings(max_examples=300)
@given(st.lists(st.sampled_from(['"', "\\", "{", "[", "}", "]", "a", "\\u00e9", ","]), max_size=30))
def test_prescan_never_raises_on_arbitrary_text(chars: list[str]) -> None:
    limits = PayloadLimits(100, 3, 3, 3, 5, True, 1, 10)
    prescan("".join(chars), limits)


flat_keys = st.one_of(
    st.text(alphabet="abé\U0001f600", max_size=6),
    st.text(alphabet="abé", min_size=60, max_size=70),
    st.text(alphabet='ab:,\\"é', min_size=0, max_size=70),
)
flat_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), flat_keys
)


@settings(max_examples=300)
@given(
    st.one_of(
        st.dictionaries(flat_keys, flat_scalars, max_size=40),
        st.lists(st.one_of(st.integers(), st.booleans(), st.none(), st.floats()), max_size=40),
    ),
    st.integers(0, 40),
    st.integers(60, 70),
    st.integers(0, 2),
)
def test_prescan_fast_paths_for_flat_containers_count_exactly(
    value: Any, max_members: int, max_string: int, style: int
) -> None:
    limits = PayloadLimits(10**6, 2, max_members, max_members, max_string, False, 0, 0)
    raw = encode(value, style)
    structural = reference_structure_ok(value, 0, limits)
    assert (prescan(raw, limits) is None) == structural, raw
