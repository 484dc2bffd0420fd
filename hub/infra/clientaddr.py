"""The client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost ``X-Forwarded-For`` hop
that is not itself a trusted proxy. Anything left of that hop was written by the client and proves nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from multidict import CIMultiDictProxy

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; raises ValueError naming the first bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network (CIDR)") from None
    return tuple(networks)


class ClientAddress:
    __slots__ = ("trusted",)

    def __init__(self, trusted: Iterable[str]) -> None:
        self.trusted = parse_networks(trusted)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of_request(self, peer: str | None, headers: CIMultiDictProxy[str]) -> str:
        """The client address of a request from ``peer`` with ``headers``: every X-Forwarded-For line, in order, as
        one list (RFC 9110 §5.3; a proxy that adds a line of its own, HAProxy's ``option forwardfor``, would
        otherwise leave the client's own line the one read)."""
        return self.of(peer, ",".join(headers.getall("X-Forwarded-For", [])))

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client address of a request from ``peer`` carrying ``forwarded_for`` (X-Forwarded-For)."""
        peer = peer or "unknown"
        if not forwarded_for or not self.trusted or not self._is_trusted(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return client  # junk left of the last trusted hop: the hop that reported it is what we know
            client = hop
            if not self._is_trusted(hop):
                return hop
        return client
