"""A scripted SIP peer for in-memory tests of the user agent (h11's ConnectionPair idea).

The peer reads what the agent sends (parsed back from the real bytes) and answers with
responses or requests built by the real message layer. Nothing is mocked: only the network
is replaced by a list.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig
from voipalert.sip.events import SipEvent
from voipalert.sip.headers import HeaderInput
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.uri import SipUri, Uri

PROXY = ("192.0.2.10", 5060)
OUR_HOST = "192.0.2.1"
OUR_PORT = 5062
CHALLENGE = 'Digest realm="testbed", nonce="n0nce-1", qop="auth", algorithm=MD5'

SDP_ANSWER = (
    b"v=0\r\no=- 99 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
)


def ua_config(**overrides: object) -> UAConfig:
    values: dict[str, object] = {
        "user": "voipalert",
        "domain": "192.0.2.10",
        "local_host": OUR_HOST,
        "local_port": OUR_PORT,
        "password": "secret",
        "registrar": SipUri(host="192.0.2.10"),
    }
    values.update(overrides)
    return UAConfig(**values)  # type: ignore[arg-type]


class Peer:
    def __init__(self, config: UAConfig | None = None, seed: int = 7) -> None:
        self.ua = UserAgent(config or ua_config(), rng=random.Random(seed))
        self.now = 0.0
        self.events: list[SipEvent] = []
        self.wire: list[tuple[Request | Response, tuple[str, int]]] = []

    def take(self) -> list[Request | Response]:
        """Everything the agent sent since the last call, parsed from its bytes."""
        out = [(parse_message(o.data), o.destination) for o in self.ua.messages_to_send()]
        self.wire += out
        self._drain_events()
        return [message for message, _ in out]

    def take_one(self, method_or_status: str | int) -> Request | Response:
        """The one distinct message of that kind sent since the last call (UDP
        retransmissions are byte-identical copies and count once)."""
        sent = self.take()
        distinct = {m.serialize(): m for m in sent if _is(m, method_or_status)}
        matching = list(distinct.values())
        assert len(matching) == 1, f"expected one {method_or_status}, agent sent {sent}"
        return matching[0]

    def requests(self, method: str) -> list[Request]:
        return [m for m, _ in self.wire if isinstance(m, Request) and m.method == method]

    def destination_of(self, message: Request | Response) -> tuple[str, int]:
        return next(dest for m, dest in self.wire if m is message)

    def reply(
        self,
        request: Request,
        status: int,
        *,
        headers: Sequence[HeaderInput] = (),
        body: bytes = b"",
        to_tag: str | None = "callee-tag",
    ) -> Response:
        response = response_to(request, status, headers=headers, body=body, to_tag=to_tag)
        self.deliver(response)
        return response

    def deliver(self, message: Request | Response, source: tuple[str, int] = PROXY) -> None:
        self.ua.receive(message.serialize(), source, self.now)
        self._drain_events()

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer due on the way, as the adapter would."""
        end = self.now + seconds
        while (deadline := self.ua.get_timer()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.ua.handle_timer(self.now)
            self._drain_events()
        self.now = end

    def _drain_events(self) -> None:
        while (event := self.ua.next_event()) is not None:
            self.events.append(event)

    def last(self, kind: type[SipEvent]) -> SipEvent:
        found = [e for e in self.events if isinstance(e, kind)]
        assert found, f"no {kind.__name__} among {self.events}"
        return found[-1]


def _is(message: Request | Response, wanted: str | int) -> bool:
    if isinstance(wanted, int):
        return isinstance(message, Response) and message.status == wanted
    return isinstance(message, Request) and message.method == wanted


def sip(uri: Uri) -> SipUri:
    """Narrow a parsed URI to a SIP URI (what every URI in these tests is)."""
    assert isinstance(uri, SipUri), uri
    return uri
