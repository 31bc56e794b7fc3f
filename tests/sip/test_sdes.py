"""SDES (RFC 4568) in our offer and in the answer: sans-IO."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import LocalProtocolError, RemoteProtocolError
from voipalert.sip.sdes import SUITE, SdesOffer, SrtpKeys, negotiate
from voipalert.sip.sdp import LocalMedia, answer_offer, parse_answer

OURS = bytes(range(30))
THEIRS = bytes(range(100, 130))
INLINE = base64.b64encode(THEIRS).decode()
REQUIRED = SdesOffer(OURS, mandatory=True)
OPTIONAL = SdesOffer(OURS, mandatory=False)
LOCAL = LocalMedia(address="192.0.2.10", port=40000, session_id=1, sdes=REQUIRED)
SESSION = ("v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", "c=IN IP4 198.51.100.7", "t=0 0")


def sdp(*lines: str) -> bytes:
    return "\r\n".join(lines).encode() + b"\r\n"


def answer(transport: str = "RTP/SAVP", *crypto: str) -> bytes:
    return sdp(*SESSION, f"m=audio 5000 {transport} 0 101", "a=rtpmap:101 telephone-event/8000",
               *(f"a=crypto:{c}" for c in crypto))  # fmt: skip


def test_required_offer_is_savp_with_one_crypto_line() -> None:
    text = LOCAL.sdp().decode()
    assert "m=audio 40000 RTP/SAVP 0 8 101\r\n" in text
    assert (
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(OURS).decode()}\r\n" in text
    )
    assert text.count("a=crypto") == 1


def test_optional_offer_is_avp_with_crypto_and_off_has_none() -> None:
    text = replace(LOCAL, sdes=OPTIONAL).sdp().decode()
    assert "m=audio 40000 RTP/AVP 0 8 101\r\n" in text and "a=crypto:1 " in text
    plain = replace(LOCAL, sdes=None).sdp().decode()
    assert "RTP/AVP" in plain and "crypto" not in plain


def test_offer_refuses_bad_keys_and_keys_stay_out_of_repr() -> None:
    with pytest.raises(LocalProtocolError, match="30 bytes"):
        SdesOffer(b"short", mandatory=True)
    assert OURS.hex() not in repr(REQUIRED) and str(OURS) not in repr(REQUIRED)
    assert str(THEIRS) not in repr(SrtpKeys(OURS, THEIRS))


@pytest.mark.parametrize(
    "crypto",
    [
        f"1 {SUITE} inline:{INLINE}",
        f"1 {SUITE} inline:{INLINE}|2^31",
        f"1 {SUITE} inline:{INLINE}|2^48",
        f"1 {SUITE} inline:{INLINE}|1099511627776",
        f"1 {SUITE} inline:{INLINE} KDR=0 WSH=128 FEC_ORDER=FEC_SRTP",
    ],
)
def test_answer_with_an_acceptable_crypto(crypto: str) -> None:
    media = parse_answer(answer("RTP/SAVP", crypto))
    assert media.transport == "RTP/SAVP" and media.crypto == (crypto,)
    keys = negotiate(REQUIRED, media.transport, media.crypto)
    assert keys == SrtpKeys(local=OURS, remote=THEIRS)


def test_optional_answers_plain_or_keyed() -> None:
    plain = parse_answer(answer("RTP/AVP"))
    assert negotiate(OPTIONAL, plain.transport, plain.crypto) is None
    keyed = parse_answer(answer("RTP/AVP", f"1 {SUITE} inline:{INLINE}"))
    assert negotiate(OPTIONAL, keyed.transport, keyed.crypto) == SrtpKeys(OURS, THEIRS)


def _b64(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


@pytest.mark.parametrize(
    ("transport", "crypto", "fragment"),
    [
        ("RTP/SAVP", (), "RTP/SAVP without a=crypto"),
        ("RTP/AVP", (f"1 {SUITE} inline:{INLINE}",), "we offered RTP/SAVP"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}",) * 2, "exactly one"),
        ("RTP/SAVP", (f"2 {SUITE} inline:{INLINE}",), "tag '2' was not offered"),
        ("RTP/SAVP", (f"x {SUITE} inline:{INLINE}",), "tag 'x'"),
        ("RTP/SAVP", (f"1234567890 {SUITE} inline:{INLINE}",), "was not offered"),
        ("RTP/SAVP", (f"1 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}",), "suite"),
        ("RTP/SAVP", (f"1 F8_128_HMAC_SHA1_80 inline:{INLINE}",), "suite"),
        ("RTP/SAVP", (f"1 {SUITE}",), "needs a tag"),
        ("RTP/SAVP", (f"1 {SUITE} uri:http://x/{INLINE}",), "key method"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{_b64(29)}",), "not 30 bytes"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{_b64(33)}",), "characters, not 40"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{'!' * 40}",), "not base64"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE[:-2]}==",), "not base64|not 30"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|2^20",), "too short"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|1000",), "too short"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|2^49",), "exceeds"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|9" + "9" * 19,), "exceeds"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|2^x",), "lifetime"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|1:4",), "MKI"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|2^31|1:4",), "MKI"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|1:4|2^31",), "lifetime/MKI"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|2^31|1:4|x",), "too many"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE}|1:4;inline:{INLINE}|2:4",), "several keys"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} UNENCRYPTED_SRTP",), "weaken"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} UNENCRYPTED_SRTCP",), "weaken"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} UNAUTHENTICATED_SRTP",), "weaken"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} KDR=24",), "not supported"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} WSH=10",), "not supported"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} FEC_KEY=inline:{INLINE}",), "not supported"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} -FUTURE",), "not supported"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{INLINE} " + "X" * 600,), "characters"),
        ("RTP/SAVP", (f"1 {SUITE} inline:{base64.b64encode(OURS).decode()}",), "we offered"),
    ],
)
def test_unacceptable_answers(transport: str, crypto: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        negotiate(REQUIRED, transport, crypto)


def test_crypto_lines_are_read_from_the_audio_stream_only_and_bounded() -> None:
    ours = f"a=crypto:1 {SUITE} inline:{INLINE}"
    body = sdp(*SESSION, "a=crypto:9 session level", "m=video 6000 RTP/SAVP 31",
               "a=crypto:8 video", "m=audio 5000 RTP/SAVP 0", ours)  # fmt: skip
    assert parse_answer(body).crypto == (f"1 {SUITE} inline:{INLINE}",)
    flood = answer("RTP/SAVP", *[f"{n} {SUITE} inline:{INLINE}" for n in range(17)])
    with pytest.raises(RemoteProtocolError, match="more than 16"):
        parse_answer(flood)


def test_reinvite_never_renegotiates_srtp() -> None:
    plain = LocalMedia(address="192.0.2.10", port=40000, session_id=1)
    for local, offer in [
        (plain, answer("RTP/SAVP", f"1 {SUITE} inline:{INLINE}")),
        (plain, answer("RTP/AVP", f"1 {SUITE} inline:{INLINE}")),
        (LOCAL, answer("RTP/AVP")),
    ]:
        with pytest.raises(RemoteProtocolError, match="re-INVITE"):
            answer_offer(local, offer)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_crypto_value_raises_nothing_but_remote_protocol_error(value: str) -> None:
    try:
        negotiate(REQUIRED, "RTP/SAVP", (value,))
    except RemoteProtocolError:
        pass
