from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import RemoteProtocolError, Request, Response
from voipalert.sip.framing import PING, PONG, KeepAlive, StreamFramer, is_keepalive

DATA = Path(__file__).parent.parent / "data"
INVITE = (DATA / "sip" / "invite_offer.sip").read_bytes()
OK = (DATA / "sip" / "asterisk_200_invite.sip").read_bytes()
BYE = (DATA / "sip" / "bye_from_pbx.sip").read_bytes()

Event = Request | Response | KeepAlive


def drain(framer: StreamFramer) -> list[Event]:
    events: list[Event] = []
    while (event := framer.next_event()) is not None:
        events.append(event)
    return events


def describe(events: list[Event]) -> list[str]:
    out = []
    for event in events:
        if isinstance(event, KeepAlive):
            out.append("ping" if event.ping else "pong")
        elif isinstance(event, Request):
            out.append(event.method)
        else:
            out.append(str(event.status))
    return out


def test_coalesced_messages_and_keepalives() -> None:
    framer = StreamFramer()
    framer.feed(PING + INVITE + PONG + OK + BYE + PING)
    assert describe(drain(framer)) == ["ping", "INVITE", "pong", "200", "BYE", "ping"]
    assert framer.buffered == 0 and not framer.broken


def test_split_at_every_byte() -> None:
    framer = StreamFramer()
    events: list[Event] = []
    for byte in INVITE + OK:
        framer.feed(bytes([byte]))
        events += drain(framer)
    assert describe(events) == ["INVITE", "200"]
    assert isinstance(events[0], Request) and events[0].body.startswith(b"v=0")


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, len(INVITE + BYE + OK)), max_size=12))
def test_random_splits_give_the_same_messages(cuts: list[int]) -> None:
    stream = INVITE + BYE + OK
    framer = StreamFramer()
    events: list[Event] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in pairwise(bounds):
        framer.feed(stream[start:end])
        events += drain(framer)
    assert describe(events) == ["INVITE", "BYE", "200"]


def test_waits_for_the_body() -> None:
    framer = StreamFramer()
    framer.feed(INVITE[:-10])
    assert framer.next_event() is None
    framer.feed(INVITE[-10:])
    assert isinstance(framer.next_event(), Request)


def test_half_a_ping_waits_and_a_lone_crlf_is_a_pong() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r")
    assert framer.next_event() is None
    framer.feed(b"\n")
    assert framer.next_event() == KeepAlive(ping=True)
    framer.feed(PONG)
    assert framer.next_event() == KeepAlive(ping=False)
    framer.feed(b"\n" + BYE)
    assert describe(drain(framer)) == ["BYE"]


def test_missing_content_length_breaks_the_stream() -> None:
    framer = StreamFramer()
    framer.feed(BYE.replace(b"Content-Length: 0\r\n", b"") + INVITE)
    with pytest.raises(RemoteProtocolError, match="Content-Length is mandatory"):
        framer.next_event()
    assert framer.broken
    with pytest.raises(RemoteProtocolError, match="Content-Length is mandatory"):
        framer.next_event()
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"more")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ((DATA / "rfc4475" / "mcl01.dat").read_bytes(), "Content-Length appears 2 times"),
        ((DATA / "rfc4475" / "ncl.dat").read_bytes(), "not a non-negative integer"),
        (b"\rINVITE", "stray CR"),
        (b"GARBAGE\r\n\r\n", "Request-Line must be"),
        (INVITE.replace(b"Content-Length: 234", b"Content-Length: 70000"), "exceeds 65535"),
        (b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 12000, "exceeds 65535"),
    ],
)
def test_framing_errors_are_fatal(data: bytes, fragment: str) -> None:
    framer = StreamFramer()
    framer.feed(data)
    with pytest.raises(RemoteProtocolError, match=fragment):
        drain(framer)
    assert framer.broken


def test_a_framed_but_invalid_message_does_not_break_the_stream() -> None:
    framer = StreamFramer()
    framer.feed((DATA / "rfc4475" / "mismatch01.dat").read_bytes() + BYE)
    with pytest.raises(RemoteProtocolError, match="CSeq method") as info:
        framer.next_event()
    assert isinstance(info.value.partial, Request)
    assert not framer.broken
    assert describe(drain(framer)) == ["BYE"]


def test_smaller_cap() -> None:
    framer = StreamFramer(max_message_bytes=300)
    framer.feed(INVITE)
    with pytest.raises(RemoteProtocolError, match="exceeds 300"):
        framer.next_event()


def test_udp_keepalive_detection() -> None:
    assert is_keepalive(b"\r\n") and is_keepalive(PING)
    assert not is_keepalive(b"") and not is_keepalive(BYE)
