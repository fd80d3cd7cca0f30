"""Property: client_ip never returns an address written by an untrusted hop."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from engine.auth.client_ip import parse_trusted_proxies, resolve_client_ip

TRUSTED = parse_trusted_proxies(["10.0.0.0/24", "2001:db8:ffff::/48"])
GARBAGE = "garbage"


def is_trusted(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in TRUSTED if network.version == parsed.version)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """An address from a trusted range, an untrusted range, or a malformed entry."""
    choice = draw(
        st.one_of(
            st.ip_addresses(network="10.0.0.0/24"),
            st.ip_addresses(network="192.0.2.0/28"),
            st.ip_addresses(network="2001:db8:ffff::/120"),
            st.ip_addresses(network="2001:db8:1::/124"),
            st.just(GARBAGE),
        )
    )
    return str(choice)


def reference(peer: str, chain: list[str]) -> str:
    """Walk ``chain + [peer]`` right to left; each entry is written by its right neighbour."""
    hops = [*chain, peer]
    if not is_trusted(peer):
        return peer
    for index in range(len(hops) - 2, -1, -1):
        entry = hops[index]
        if entry == GARBAGE:
            return hops[index + 1]
        if not is_trusted(entry):
            return entry
    return hops[0]


@given(
    peer=addresses().filter(lambda a: a != GARBAGE),
    chain=st.lists(addresses(), max_size=8),
)
def test_matches_reference_model(peer: str, chain: list[str]) -> None:
    header = {"x-forwarded-for": ", ".join(chain)} if chain else {}
    assert resolve_client_ip(peer, header, TRUSTED) == reference(peer, chain)


@given(
    peer=addresses().filter(lambda a: a != GARBAGE),
    chain=st.lists(addresses(), max_size=8),
)
def test_result_was_written_by_a_trusted_hop(peer: str, chain: list[str]) -> None:
    header = {"x-forwarded-for": ",".join(chain)}
    result = resolve_client_ip(peer, header, TRUSTED)
    if result == peer:
        return
    # The result is an XFF entry; every hop to its right (its writer and those after it,
    # up to the peer) must be trusted.
    hops = [*chain, peer]
    positions = [i for i, hop in enumerate(hops[:-1]) if hop == result]
    assert positions, "result must come from the chain or be the peer"
    assert any(all(is_trusted(h) for h in hops[i + 1 :]) for i in positions)


@given(peer=st.ip_addresses(network="198.51.100.0/24"), chain=st.lists(addresses(), max_size=5))
def test_untrusted_peer_is_returned_as_is(peer: object, chain: list[str]) -> None:
    header = {"x-forwarded-for": ", ".join(chain)}
    assert resolve_client_ip(str(peer), header, TRUSTED) == str(peer)
