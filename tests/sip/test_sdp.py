from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.codec import Codec
from voipalert.sip import LocalProtocolError, RemoteProtocolError, parse_message
from voipalert.sip.sdp import (
    Direction,
    LocalMedia,
    answer_offer,
    new_local_media,
    parse_answer,
)

GOLDEN = Path(__file__).parent.parent / "data" / "sip"
LOCAL = LocalMedia(address="192.0.2.10", port=40000, session_id=3724394400473241313)


def sdp(*lines: str, end: str = "\r\n") -> bytes:
    return end.join(lines).encode() + end.encode()


SESSION = ("v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", "c=IN IP4 198.51.100.7", "t=0 0")


def test_offer_is_exactly_the_checklist_form() -> None:
    body = parse_message((GOLDEN / "invite_offer.sip").read_bytes()).body
    assert LOCAL.sdp() == body
    assert body.decode().splitlines() == [
        "v=0",
        "o=- 3724394400473241313 1 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]


def test_offer_codec_order_ipv6_and_no_dtmf() -> None:
    media = LocalMedia(
        address="2001:db8::10",
        port=4000,
        session_id=5,
        codecs=(Codec.PCMA, Codec.PCMU),
        dtmf_payload_type=None,
    )
    lines = media.sdp().decode().splitlines()
    assert "c=IN IP6 2001:db8::10" in lines
    assert "m=audio 4000 RTP/AVP 8 0" in lines
    assert not any("telephone-event" in line for line in lines)


def test_new_local_media_draws_a_62_bit_session_id() -> None:
    first = new_local_media("192.0.2.10", 40000, rng=random.Random(1))
    second = new_local_media("192.0.2.10", 40000, rng=random.Random(2))
    assert 0 <= first.session_id < 2**62 and first.session_id != second.session_id
    assert first.session_version == 1


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"address": "0.0.0.0"}, "unspecified"),
        ({"address": "::"}, "unspecified"),
        ({"address": "pbx.example.com"}, "not an IP address"),
        ({"address": "192.0.2.1\r\nc=IN IP4 6.6.6.6"}, "not an IP address"),
        ({"address": "fe80::1%eth0\r\na=sendonly"}, "IPv6 zone"),
        ({"port": 40001}, "even"),
        ({"port": 0}, "even"),
        ({"dtmf_payload_type": 200}, "96-127"),
        ({"codecs": ()}, "at least one codec"),
        ({"session_id": -1}, "out of range"),
    ],
)
def test_offer_refuses_bad_values(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(LocalProtocolError, match=fragment):
        replace(LOCAL, **changes).sdp()


def test_parse_asterisk_answer() -> None:
    body = parse_message((GOLDEN / "asterisk_200_invite.sip").read_bytes()).body
    media = parse_answer(body)
    assert (media.address, media.port) == ("198.51.100.7", 16384)
    assert (media.codec, media.payload_type, media.telephone_event_pt) == (Codec.PCMA, 8, 96)
    assert (media.ptime_ms, media.maxptime_ms) == (20, 140)
    assert media.direction is Direction.SENDRECV
    assert media.remote_receives and media.remote_sends
    assert (media.session_id, media.session_version) == ("1712345700", 1712345701)


def test_media_level_connection_overrides_session_level_and_lf_only_lines() -> None:
    body = sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "c=IN IP4 203.0.113.5", end="\n")
    media = parse_answer(body)
    assert (media.address, media.codec, media.payload_type) == ("203.0.113.5", Codec.PCMU, 0)
    assert media.ptime_ms is None and media.telephone_event_pt is None


def test_first_supported_codec_in_the_answer_and_dynamic_mapping() -> None:
    body = sdp(*SESSION, "m=audio 5000 RTP/AVP 18 8 0", "a=rtpmap:18 G729/8000")
    assert parse_answer(body).codec is Codec.PCMA
    assert parse_answer(body, codecs=(Codec.PCMU,)).codec is Codec.PCMU
    dynamic = sdp(*SESSION, "m=audio 5000 RTP/AVP 97", "a=rtpmap:97 pcmu/8000")
    media = parse_answer(dynamic)
    assert (media.codec, media.payload_type) == (Codec.PCMU, 97)


def test_freeswitch_style_several_telephone_event_rates() -> None:
    body = sdp(
        *SESSION,
        "m=audio 5000 RTP/AVP 102 0 101 100",
        "a=rtpmap:102 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/48000",
        "a=rtpmap:100 telephone-event/8000",
        "a=fmtp:100 0-16",
        "a=rtcp-mux",
        "a=ice-ufrag:abcd",
        "a=candidate:1 1 udp 2130706431 198.51.100.7 5000 typ host",
        "a=ptime:30",
    )
    media = parse_answer(body)
    assert (media.codec, media.telephone_event_pt, media.ptime_ms) == (Codec.PCMU, 100, 30)


@pytest.mark.parametrize(
    ("extra", "direction", "receives", "sends"),
    [
        (("a=sendonly",), Direction.SENDONLY, False, True),
        (("a=recvonly",), Direction.RECVONLY, True, False),
        (("a=inactive",), Direction.INACTIVE, False, False),
        (("c=IN IP4 0.0.0.0",), Direction.SENDRECV, False, True),
    ],
)
def test_direction_and_hold(
    extra: tuple[str, ...], direction: Direction, receives: bool, sends: bool
) -> None:
    media = parse_answer(sdp(*SESSION, "m=audio 5000 RTP/AVP 0", *extra))
    assert (media.direction, media.remote_receives, media.remote_sends) == (
        direction,
        receives,
        sends,
    )


def test_session_level_direction_and_ptime_apply_to_the_stream() -> None:
    body = sdp(*SESSION, "a=sendonly", "a=ptime:10", "m=audio 5000 RTP/AVP 8")
    media = parse_answer(body)
    assert (media.direction, media.ptime_ms) == (Direction.SENDONLY, 10)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (sdp(*SESSION, "m=audio 0 RTP/AVP 0"), "rejected \\(port 0\\)"),
        (sdp(*SESSION, "m=audio 5000 UDP/TLS/RTP/SAVPF 0"), "unsupported media transport"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 18"), "no common codec"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 96", "a=rtpmap:96 PCMU/16000"), "no common codec"),
        (sdp(*SESSION, "m=video 5000 RTP/AVP 31"), "no audio stream"),
        (sdp("v=0", "s=-", "c=IN IP4 1.2.3.4", "m=audio 5000 RTP/AVP 0"), "no o= line"),
        (sdp("o=- 1 1 IN IP4 1.2.3.4", "v=0"), "must start with v=0"),
        (b"", "must start with v=0"),
        (sdp(*SESSION, "junk"), "is not 'x=value'"),
        (sdp(*SESSION, "M=audio 5000 RTP/AVP 0"), "is not 'x=value'"),
        (sdp(*SESSION[:3], "t=0 0", "m=audio 5000 RTP/AVP 0"), "no c= line"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "c=IN IP4 not_a host"), "bad c= line"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "c=IN IP4 ::1"), "is not IP4"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "c=IN IP4 bad_host"), "bad address"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "c=IN IP6 fe80::1%eth0"), "bad address"),
        (sdp(*SESSION, "m=audio 70000 RTP/AVP 0"), "port"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0 x"), "payload type"),
        (sdp(*SESSION, "m=audio 5000"), "m= needs"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "a=rtpmap:0 PCMU"), "expected 'pt name/rate'"),
        (sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "a=ptime:0"), "ptime"),
        (sdp("v=0", "o=- x 1 IN IP4 1.2.3.4"), "session id"),
        (sdp("v=0", "o=- 1"), "o= needs 6 fields"),
        (b"v=0\r\n\xff\r\n", "not UTF-8"),
        (b"v=0\r\n" + b"a=x\r\n" * 5000, "exceeds"),
    ],
)
def test_malformed_or_unusable_sdp(body: bytes, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        parse_answer(body)


def test_connection_may_be_a_domain_name() -> None:
    body = sdp(*SESSION, "m=audio 5000 RTP/AVP 0", "c=IN IP4 media.example.com")
    assert parse_answer(body).address == "media.example.com"


def test_reinvite_with_the_same_offer_keeps_the_version() -> None:
    answer = answer_offer(LOCAL, LOCAL.sdp().replace(b"192.0.2.10", b"198.51.100.7"))
    assert answer.body == LOCAL.sdp()
    assert answer.local == LOCAL
    assert answer.remote.address == "198.51.100.7"


def test_reinvite_hold_and_changed_payload_types_bump_the_version() -> None:
    offer = sdp(
        *SESSION,
        "m=audio 6000 RTP/AVP 8 96",
        "a=rtpmap:96 telephone-event/8000",
        "a=sendonly",
    )
    answer = answer_offer(LOCAL, offer)
    lines = answer.body.decode().splitlines()
    assert "o=- 3724394400473241313 2 IN IP4 192.0.2.10" in lines
    assert "m=audio 40000 RTP/AVP 8 96" in lines
    assert "a=rtpmap:96 telephone-event/8000" in lines and "a=recvonly" in lines
    assert answer.local.session_version == 2
    assert (answer.remote.codec, answer.remote.port) == (Codec.PCMA, 6000)
    assert not answer.remote.remote_receives
    again = answer_offer(answer.local, offer)
    assert again.body == answer.body  # nothing changed since: same version


def test_reinvite_without_a_common_codec_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="no common codec"):
        answer_offer(LOCAL, sdp(*SESSION, "m=audio 6000 RTP/AVP 18"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_remote_protocol_error(data: bytes) -> None:
    try:
        parse_answer(b"v=0\r\n" + data)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(
            [
                "o=- 1 1 IN IP4 1.2.3.4",
                "c=IN IP4 1.2.3.4",
                "c=IN IP6 ::1",
                "m=audio 5000 RTP/AVP 0 8 101",
                "m=audio 0 RTP/AVP 0",
                "m=video 5002 RTP/AVP 31",
                "a=rtpmap:101 telephone-event/8000",
                "a=rtpmap:0 PCMU/8000",
                "a=sendonly",
                "a=ptime:20",
                "a=rtpmap:x y",
                "a=ptime:x",
                "s=-",
                "t=0 0",
            ]
        ),
        max_size=12,
    )
)
def test_shuffled_sdp_lines_raise_nothing_but_remote_protocol_error(lines: list[str]) -> None:
    try:
        parse_answer(sdp("v=0", *lines))
    except RemoteProtocolError:
        pass
