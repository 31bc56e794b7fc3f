"""What the agent offers the machines built on it (registration, calls): a narrow seam.

``Registration`` and ``Call`` never touch transactions or bytes directly; they ask the
agent to send a request in a new client transaction and are told, through ``TxUser``,
about the responses and failures of that transaction.
"""

from __future__ import annotations

import random
from enum import Enum
from typing import Protocol

from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.events import SipEvent
from voipalert.sip.locate import Hop
from voipalert.sip.message import Request, Response


class TxFailure(Enum):
    TIMEOUT = "timeout"  # Timer B or F: no final response (RFC 3261 §8.1.3.1: a 408)
    TRANSPORT = "transport error"  # ICMP unreachable, connection refused or reset (a 503)
    NO_ADDRESS = "DNS gave no address for the host"  # RFC 3263 found nothing (a 503)
    OVERLOAD = "too many requests waiting for DNS"  # a bound, not the network (a 503)

    @property
    def status(self) -> int:
        return 408 if self is TxFailure.TIMEOUT else 503


class TxUser(Protocol):
    def on_response(self, request: Request, response: Response, now: float) -> None: ...

    def on_failure(self, request: Request, failure: TxFailure, now: float) -> None: ...

    def retry_elsewhere(self, request: Request, retry: Request) -> bool:
        """``request`` failed on one of its hop's addresses (RFC 3263 §4.3) and ``retry``
        (the same request with a new branch) is about to go to the next one. Return False
        to fail instead; on True ``retry`` replaces ``request`` from now on."""
        ...


class AgentServices(Protocol):
    @property
    def config(self) -> UAConfig: ...

    @property
    def rng(self) -> random.Random: ...

    def send_request(
        self, request: Request, destination: Hop | Address, user: TxUser | None, now: float
    ) -> None:
        """Send ``request`` in a new client transaction (ACK: sent as is, no transaction),
        to the addresses DNS gives for ``destination`` (RFC 3263), in order."""

    def emit(self, event: SipEvent) -> None: ...
