"""Resolve the client IP address behind trusted reverse proxies.

``X-Forwarded-For`` is honoured only when the TCP peer is a trusted proxy. The chain is then
walked from the right (the entry the peer appended) skipping trusted hops; the first untrusted
address is the client. An address written by an untrusted hop is never returned. Pure.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["IPAddress", "IPNetwork", "parse_trusted_proxies", "resolve_client_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDRs (``10.0.0.0/8``) or single addresses (``127.0.0.1``).

    :raises ValueError: on an invalid entry (the message names it).
    """
    networks: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {cidr!r}") from None
    return tuple(networks)


@functools.lru_cache(maxsize=4096)  # pure; asked at each handshake and each namespace CONNECT
def _parse_address(value: str) -> IPAddress | None:
    """Parse ``1.2.3.4``, ``1.2.3.4:5678``, ``::1`` or ``[::1]:5678``; ``None`` if invalid."""
    text = value.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def resolve_client_ip(
    remote_addr: str,
    headers: Mapping[str, str],
    trusted_proxies: Sequence[IPNetwork] = (),
) -> str:
    """Return the client address for a connection.

    :param remote_addr: the TCP peer address.
    :param headers: request headers with lower-case names (``x-forwarded-for``; repeated
        headers joined with commas).
    :param trusted_proxies: networks whose hops may speak for the client.
    :returns: the canonical text form of the address; ``remote_addr`` unchanged if it does
        not parse. When an entry written by a trusted hop is malformed, the address of that
        hop is returned.
    """
    peer = _parse_address(remote_addr)
    if peer is None:
        return remote_addr
    if not _is_trusted(peer, trusted_proxies):
        return str(peer)
    forwarded = headers.get("x-forwarded-for", "")
    hops = [hop for hop in (part.strip() for part in forwarded.split(",")) if hop]
    current = peer  # the last address known to be trustworthy as a writer
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:
            return str(current)
        if not _is_trusted(address, trusted_proxies):
            return str(address)
        current = address
    return str(current)
