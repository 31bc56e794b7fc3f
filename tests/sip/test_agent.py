"""What the agent answers to requests that reach it, and how it treats garbage."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.sip.peer import OUR_HOST, PROXY, SDP_ANSWER, Peer, ua_config
from tests.sip.test_call import answered_call
from voipalert.sip.events import CallMediaChanged, DigitReceived
from voipalert.sip.headers import HeaderInput
from voipalert.sip.message import Request, Response
from voipalert.sip.uri import SipUri

US = SipUri(user="voipalert", host=OUR_HOST, port=5062)


def request(
    method: str,
    *,
    branch: str = "z9hG4bKpeer1",
    call_id: str = "out-of-dialog@peer",
    from_: str = "<sip:scanner@192.0.2.66>;tag=abc",
    to: str = "<sip:voipalert@192.0.2.1>",
    cseq: int = 1,
    extra: Sequence[HeaderInput] = (),
    body: bytes = b"",
) -> Request:
    return Request.build(
        method, US,
        headers=[("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch}"),
                 ("From", from_), ("To", to), ("Call-ID", call_id),
                 ("CSeq", f"{cseq} {method}"), ("Max-Forwards", "70"), *extra],
        body=body,
    )  # fmt: skip


def answer(peer: Peer, message: Request, source: tuple[str, int] = PROXY) -> Response:
    peer.deliver(message, source)
    sent = peer.take()
    assert len(sent) == 1, sent
    response = sent[0]
    assert isinstance(response, Response)
    assert peer.destination_of(response) == source
    return response


def test_options_gets_200_with_allow() -> None:
    peer = Peer()
    response = answer(peer, request("OPTIONS"))
    assert response.status == 200
    assert "INVITE" in response.allow and "BYE" in response.allow
    assert response.headers.get("Accept") == "application/sdp"


def test_retransmitted_request_gets_the_same_response() -> None:
    peer = Peer()
    first = answer(peer, request("OPTIONS"))
    again = answer(peer, request("OPTIONS"))
    assert again.serialize() == first.serialize()


def test_unsolicited_invite_is_refused_without_state() -> None:
    peer = Peer()
    response = answer(peer, request("INVITE", body=SDP_ANSWER))
    assert response.status == 486
    assert response.to.tag is not None
    assert peer.ua.active_calls == 0
    assert peer.events == []
    assert peer.ua.stats["unsolicited_invite"] == 1


@pytest.mark.parametrize(("method", "status"), [("BYE", 481), ("INFO", 481), ("SUBSCRIBE", 405),
                                                ("MESSAGE", 403), ("FROBNICATE", 501)])  # fmt: skip
def test_requests_outside_our_dialogs(method: str, status: int) -> None:
    peer = Peer()
    to = "<sip:voipalert@192.0.2.1>" + (";tag=nope" if method in ("BYE", "INFO") else "")
    response = answer(peer, request(method, to=to))
    assert response.status == status
    if status in (405, 501):
        assert "INVITE" in response.allow


def test_cancel_for_unknown_transaction_is_481() -> None:
    assert answer(Peer(), request("CANCEL")).status == 481


@pytest.mark.parametrize(("event", "status"), [("message-summary", 200), ("presence", 489)])
def test_unsolicited_notify(event: str, status: int) -> None:
    response = answer(Peer(), request("NOTIFY", extra=[("Event", event)]))
    assert response.status == status


def test_unsupported_require_gets_420() -> None:
    response = answer(Peer(), request("OPTIONS", extra=[("Require", "100rel")]))
    assert response.status == 420
    assert response.headers.get("Unsupported") == "100rel"


def in_dialog(peer: Peer, method: str, **kwargs: object) -> Request:
    _call_id, invite, ok = answered_call(peer)
    peer.take()
    return request(
        method, call_id=invite.call_id, from_=ok.headers.get("To") or "",
        to=invite.headers.get("From") or "", cseq=50, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=1\r\nDuration=160\r\n", "1"),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=250\r\n", "#"),
        ("application/dtmf", b"5", "5"),
    ],
)
def test_info_dtmf_becomes_a_digit(content_type: str, body: bytes, digit: str) -> None:
    peer = Peer()
    info = in_dialog(peer, "INFO", extra=[("Content-Type", content_type)], body=body)
    assert answer(peer, info).status == 200
    event = peer.last(DigitReceived)
    assert isinstance(event, DigitReceived) and event.digit == digit


def test_info_with_a_body_we_cannot_read_is_415() -> None:
    peer = Peer()
    info = in_dialog(peer, "INFO", extra=[("Content-Type", "text/plain")], body=b"hello")
    response = answer(peer, info)
    assert response.status == 415
    assert "application/dtmf-relay" in (response.headers.get("Accept") or "")


def test_reinvite_is_answered_with_the_current_session_and_retransmitted_until_ack() -> None:
    peer = Peer()
    moved = SDP_ANSWER.replace(b"192.0.2.20", b"192.0.2.77").replace(b"40000", b"41000")
    reinvite = in_dialog(
        peer, "INVITE", branch="z9hG4bKre1",
        extra=[("Contact", "<sip:alice@192.0.2.20:5161>"), ("Content-Type", "application/sdp")],
        body=moved,
    )  # fmt: skip
    response = answer(peer, reinvite)
    assert response.status == 200
    assert response.content_type == "application/sdp"
    assert b"m=audio 16384 " in response.body  # same port: our session did not change
    assert str(response.contacts[0].uri) == f"sip:voipalert@{OUR_HOST}:5062"
    changed = peer.last(CallMediaChanged)
    assert isinstance(changed, CallMediaChanged)
    assert (changed.media.address, changed.media.port) == ("192.0.2.77", 41000)
    peer.advance(0.6)
    retransmitted = [m for m in peer.take() if isinstance(m, Response)]
    assert [m.status for m in retransmitted] == [200]  # §13.3.1.4: until the ACK
    ack = request(
        "ACK", branch="z9hG4bKack2", call_id=reinvite.call_id,
        from_=reinvite.headers.get("From") or "", to=response.headers.get("To") or "", cseq=50,
    )  # fmt: skip
    peer.deliver(ack)
    peer.advance(5)
    assert peer.take() == []


def test_garbage_is_dropped_and_counted() -> None:
    peer = Peer()
    for junk in (b"", b"\x00\xff" * 40, b"HELLO WORLD\r\n\r\n", b"SIP/2.0 abc\r\n\r\n"):
        peer.ua.receive(junk, PROXY, peer.now)
    assert peer.take() == []
    assert peer.ua.stats["malformed"] == 4


def test_malformed_request_with_a_via_gets_400() -> None:
    peer = Peer()
    data = (
        b"OPTIONS sip:voipalert@192.0.2.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    peer.ua.receive(data, PROXY, peer.now)
    sent = peer.take()
    assert len(sent) == 1 and isinstance(sent[0], Response) and sent[0].status == 400


def test_responses_to_nobody_are_dropped() -> None:
    peer = Peer()
    stray = Response.build(
        200, headers=[("Via", "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKnone"),
                      ("From", "<sip:a@b>;tag=1"), ("To", "<sip:c@d>;tag=2"),
                      ("Call-ID", "x"), ("CSeq", "1 INVITE")],
    )  # fmt: skip
    peer.deliver(stray)
    not_ours = Response.build(
        200, headers=[("Via", "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKnone"),
                      ("From", "<sip:a@b>;tag=1"), ("To", "<sip:c@d>;tag=2"),
                      ("Call-ID", "x"), ("CSeq", "1 INVITE")],
    )  # fmt: skip
    peer.deliver(not_ours)
    assert peer.take() == []
    assert peer.ua.stats["stray_response"] == 2


def test_untrusted_sources_get_nothing() -> None:
    peer = Peer(ua_config(trusted_hosts=frozenset({"192.0.2.10"})))
    peer.deliver(request("OPTIONS"), ("203.0.113.9", 5060))
    assert peer.take() == []
    assert peer.ua.stats["untrusted"] == 1
    assert answer(peer, request("OPTIONS", branch="z9hG4bKok")).status == 200


def test_out_of_dialog_floods_are_rate_limited() -> None:
    peer = Peer(ua_config(unsolicited_per_second=2.0))
    for n in range(50):
        peer.deliver(request("OPTIONS", branch=f"z9hG4bKflood{n}"))
    answered = [m for m in peer.take() if isinstance(m, Response)]
    assert len(answered) == 10  # the burst (5 s worth), then nothing
    assert peer.ua.stats["rate_limited"] == 40


def test_reinvite_without_sdp_offers_ours_and_takes_the_answer_from_the_ack() -> None:
    peer = Peer()
    reinvite = in_dialog(
        peer, "INVITE", branch="z9hG4bKre2", extra=[("Contact", "<sip:alice@192.0.2.20:5161>")]
    )
    response = answer(peer, reinvite)
    assert response.status == 200 and b"m=audio 16384 RTP/AVP 0 8 101" in response.body
    moved = SDP_ANSWER.replace(b"40000", b"42000")
    ack = request(
        "ACK", branch="z9hG4bKack3", call_id=reinvite.call_id,
        from_=reinvite.headers.get("From") or "", to=response.headers.get("To") or "",
        cseq=50, extra=[("Content-Type", "application/sdp")], body=moved,
    )  # fmt: skip
    peer.deliver(ack)
    changed = peer.last(CallMediaChanged)
    assert isinstance(changed, CallMediaChanged) and changed.media.port == 42000
