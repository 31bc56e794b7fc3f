"""The state every part of the user agent shares, and what it hands to the adapter.

``UserAgent`` (``agent.py``) is a façade over a few collaborators, each with one job
(docs/sip.md, "The user agent's parts"). They all read and write the same small core:
the configuration (which the NAT keep-alive may move to the mapped address, RFC 3581
§4), the random source, the counters, the datagrams waiting to be sent, the events
waiting to be read and the calls by Call-ID. Nothing here does I/O.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from voipalert.sip.call import Call
from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.events import CallId, SipEvent


@dataclass(frozen=True, slots=True)
class Outbound:
    data: bytes
    destination: Address
    """Always an IP address and port: names are resolved before anything is sent."""
    transport: str
    server_name: str | None = None
    """The host name the destination was found for (TLS: the name the certificate must
    carry, RFC 5922 §4); None for numeric hops and responses."""


@dataclass(slots=True)
class AgentCore:
    config: UAConfig
    rng: random.Random
    stats: Counter[str] = field(default_factory=Counter)
    out: list[Outbound] = field(default_factory=list)
    events: deque[SipEvent] = field(default_factory=deque)
    calls: dict[CallId, Call] = field(default_factory=dict)

    def send(self, data: bytes, destination: Address, server_name: str | None = None) -> None:
        """Queue ``data`` for ``destination`` on the configured transport."""
        self.out.append(Outbound(data, destination, self.config.transport, server_name))

    def emit(self, event: SipEvent) -> None:
        self.events.append(event)
