"""Outbound calls against a scripted proxy/callee (docs/sip.md §4.5), including the
pyVoIP tracker regressions: #272 and #297 (2xx ACK), #69/#216 (407 on INVITE), #167 (new
branch on the authenticated retry), #177/#169/#32 (CANCEL in the early state)."""

from __future__ import annotations

import random

import pytest

from tests.sip.peer import CHALLENGE, OUR_HOST, PROXY, SDP_ANSWER, Peer, sip, ua_config
from voipalert.codec import Codec
from voipalert.sip.call import outcome_for_status
from voipalert.sip.events import (
    CallAnswered,
    CallEnded,
    CallId,
    CallOutcome,
    CallRinging,
)
from voipalert.sip.message import Request, Response
from voipalert.sip.sdp import new_local_media
from voipalert.sip.uri import SipUri

TARGET = SipUri(user="alice", host="192.0.2.10")
CONTACT = "<sip:alice@192.0.2.20:5161>"
RECORD_ROUTE = ("<sip:192.0.2.10;lr;ftag=x>", "<sip:192.0.2.11;lr>")


def start_call(peer: Peer, ring_timeout: float = 30.0) -> tuple[CallId, Request]:
    media = new_local_media(OUR_HOST, 16384, rng=random.Random(1))
    call_id = peer.ua.invite(TARGET, media, peer.now, ring_timeout=ring_timeout)
    invite = peer.take_one("INVITE")
    assert isinstance(invite, Request)
    return call_id, invite


def answered_call(peer: Peer) -> tuple[CallId, Request, Response]:
    call_id, invite = start_call(peer)
    peer.reply(invite, 180)
    ok = peer.reply(
        invite, 200,
        headers=[("Contact", CONTACT), *[("Record-Route", rr) for rr in RECORD_ROUTE],
                 ("Content-Type", "application/sdp")],
        body=SDP_ANSWER,
    )  # fmt: skip
    return call_id, invite, ok


def ended(peer: Peer) -> CallEnded:
    event = peer.last(CallEnded)
    assert isinstance(event, CallEnded)
    return event


def test_invite_carries_an_sdp_offer_and_identity() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    assert invite.uri == TARGET
    assert invite.to.tag is None and invite.from_.tag is not None
    assert sip(invite.from_.uri).host == "192.0.2.10"  # our AoR domain, not our IP
    assert sip(invite.contacts[0].uri).host == OUR_HOST
    assert invite.content_type == "application/sdp"
    body = invite.body.decode()
    assert "m=audio 16384 RTP/AVP 0 8 101" in body
    assert "a=rtpmap:101 telephone-event/8000" in body
    assert "c=IN IP4 192.0.2.1" in body
    assert "INVITE" in (invite.headers.get("Allow") or "")
    assert invite.supported == ("100rel", "timer")  # RFC 3262, RFC 4028 (docs/sip.md §4.13)
    assert "Session-Expires" not in invite.headers  # the UAS chooses, unless a 422 said
    assert invite.max_forwards == 70
    assert invite.via.has_rport


def test_407_on_invite_gets_proxy_authorization_and_a_new_branch() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 407, headers=[("Proxy-Authenticate", CHALLENGE)])
    sent = peer.take()
    acks = [m for m in sent if isinstance(m, Request) and m.method == "ACK"]
    retries = [m for m in sent if isinstance(m, Request) and m.method == "INVITE"]
    assert len(acks) == 1 and len(retries) == 1
    ack, retry = acks[0], retries[0]
    # §17.1.1.3: the non-2xx ACK reuses the INVITE's branch and carries the 407's To tag.
    assert ack.via.branch == invite.via.branch
    assert ack.to.tag == "callee-tag"
    assert ack.cseq.seq == invite.cseq.seq
    auth = retry.headers.get("Proxy-Authorization") or ""
    assert 'uri="sip:alice@192.0.2.10"' in auth
    assert retry.via.branch != invite.via.branch  # pyVoIP #167
    assert retry.call_id == invite.call_id
    assert retry.from_.tag == invite.from_.tag
    assert retry.cseq.seq == invite.cseq.seq + 1


def test_401_on_invite_gets_authorization() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 401, headers=[("WWW-Authenticate", CHALLENGE)])
    retry = peer.take_one("INVITE")
    assert isinstance(retry, Request)
    assert "Authorization" in retry.headers


def test_second_challenge_rejects_the_call() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 407, headers=[("Proxy-Authenticate", CHALLENGE)])
    retry = peer.take_one("INVITE")
    assert isinstance(retry, Request)
    peer.reply(retry, 407, headers=[("Proxy-Authenticate", CHALLENGE.replace("n0nce-1", "x"))])
    assert peer.requests("INVITE") == [invite, retry]
    event = ended(peer)
    assert event.outcome is CallOutcome.REJECTED and event.status == 407


def test_answer_ack_follows_the_2xx_contact_and_record_route() -> None:
    peer = Peer()
    call_id, invite, _ = answered_call(peer)
    ringing = peer.last(CallRinging)
    assert isinstance(ringing, CallRinging) and ringing.status == 180 and not ringing.early_media
    answered = peer.last(CallAnswered)
    assert isinstance(answered, CallAnswered) and answered.call_id == call_id
    assert (answered.media.address, answered.media.port) == ("192.0.2.20", 40000)
    assert answered.media.codec is Codec.PCMU and answered.media.telephone_event_pt == 101
    ack = peer.take_one("ACK")
    assert isinstance(ack, Request)
    assert str(ack.uri) == "sip:alice@192.0.2.20:5161"  # the 2xx Contact (#297)
    assert [str(r.uri) for r in ack.route] == ["sip:192.0.2.11;lr", "sip:192.0.2.10;lr;ftag=x"]
    assert peer.destination_of(ack) == ("192.0.2.11", 5060)  # first Route hop
    assert ack.to.tag == "callee-tag"  # the 2xx's tag (#272)
    assert ack.cseq.seq == invite.cseq.seq and ack.cseq.method == "ACK"
    assert ack.via.branch != invite.via.branch  # the 2xx ACK is a new transaction


def test_every_2xx_retransmission_is_acked_again() -> None:
    peer = Peer()
    _, _invite, ok = answered_call(peer)
    first = peer.take_one("ACK")
    for _ in range(3):
        peer.deliver(ok)
        again = peer.take_one("ACK")
        assert again.serialize() == first.serialize()


def test_no_drop_at_32_seconds_and_local_bye() -> None:
    peer = Peer()
    call_id, invite, _ = answered_call(peer)
    peer.take()
    peer.advance(40)  # Timer M ends the INVITE transaction; the call stays up
    assert peer.take() == []
    assert not [e for e in peer.events if isinstance(e, CallEnded)]
    peer.ua.hang_up(call_id, peer.now)
    bye = peer.take_one("BYE")
    assert isinstance(bye, Request)
    assert str(bye.uri) == "sip:alice@192.0.2.20:5161"
    assert bye.cseq.seq == invite.cseq.seq + 1
    assert bye.to.tag == "callee-tag" and bye.from_.tag == invite.from_.tag
    assert len(bye.route) == 2
    peer.reply(bye, 200, to_tag=None)
    event = ended(peer)
    assert event.outcome is CallOutcome.ANSWERED and event.answered
    assert event.hung_up_by == "local"


def test_remote_bye_is_answered_and_ends_the_call() -> None:
    peer = Peer()
    call_id, invite, ok = answered_call(peer)
    peer.take()
    bye = Request.build(
        "BYE", SipUri(user="voipalert", host=OUR_HOST, port=5062),
        headers=[
            ("Via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKbye1"),
            ("From", ok.headers.get("To") or ""), ("To", invite.headers.get("From") or ""),
            ("Call-ID", invite.call_id), ("CSeq", "9 BYE"), ("Max-Forwards", "69"),
            ("Reason", "Q.850;cause=16"),
        ],
    )  # fmt: skip
    peer.deliver(bye)
    reply = peer.take_one(200)
    assert isinstance(reply, Response) and reply.cseq.method == "BYE"
    event = ended(peer)
    assert event.call_id == call_id
    assert event.outcome is CallOutcome.ANSWERED and event.hung_up_by == "remote"
    assert event.reason_header == "Q.850;cause=16"


def test_ring_timeout_sends_cancel_and_ends_no_answer() -> None:
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=20)
    peer.reply(invite, 180)
    peer.advance(19.9)
    assert peer.take() == []
    peer.advance(0.2)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    assert cancel.via.branch == invite.via.branch  # §9.1: same branch, one Via
    assert len(cancel.vias) == 1
    assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
    assert cancel.to.tag is None
    assert cancel.cseq.seq == invite.cseq.seq and cancel.cseq.method == "CANCEL"
    peer.reply(cancel, 200)
    peer.reply(invite, 487)
    ack = peer.take_one("ACK")
    assert isinstance(ack, Request) and ack.via.branch == invite.via.branch
    event = ended(peer)
    assert event.outcome is CallOutcome.NO_ANSWER and event.status == 487


def test_cancel_waits_for_a_provisional() -> None:
    peer = Peer()
    call_id, invite = start_call(peer)
    peer.ua.hang_up(call_id, peer.now)
    assert peer.take() == []  # §9.1: no CANCEL before any provisional response
    peer.reply(invite, 100, to_tag=None)
    assert isinstance(peer.take_one("CANCEL"), Request)
    peer.reply(invite, 487)
    assert ended(peer).outcome is CallOutcome.CANCELLED


def test_200_after_cancel_is_acked_and_hung_up() -> None:
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=5)
    peer.reply(invite, 180)
    peer.advance(6)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    peer.reply(cancel, 200)
    ok = peer.reply(
        invite, 200, headers=[("Contact", CONTACT), ("Content-Type", "application/sdp")],
        body=SDP_ANSWER,
    )  # fmt: skip
    sent = peer.take()
    assert [m.method for m in sent if isinstance(m, Request)] == ["ACK", "BYE"]
    bye = sent[-1]
    assert isinstance(bye, Request)
    peer.reply(bye, 200, to_tag=None)
    event = ended(peer)
    assert event.outcome is CallOutcome.NO_ANSWER
    assert "answered after" in event.reason
    assert not [e for e in peer.events if isinstance(e, CallAnswered)]
    assert ok.status == 200


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (486, CallOutcome.BUSY),
        (600, CallOutcome.BUSY),
        (603, CallOutcome.DECLINED),
        (404, CallOutcome.UNREACHABLE),
        (480, CallOutcome.UNREACHABLE),
        (408, CallOutcome.NO_ANSWER),
        (403, CallOutcome.REJECTED),
        (488, CallOutcome.REJECTED),
        (500, CallOutcome.FAILED),
        (503, CallOutcome.FAILED),
        (302, CallOutcome.FAILED),
    ],
)
def test_final_failures_map_to_outcomes_and_are_acked(status: int, outcome: CallOutcome) -> None:
    peer = Peer()
    _, invite = start_call(peer)
    # Cause 16 (normal clearing) says nothing about the callee: the status decides.
    peer.reply(invite, status, headers=[("Reason", "Q.850;cause=16")])
    ack = peer.take_one("ACK")
    assert isinstance(ack, Request) and ack.via.branch == invite.via.branch
    event = ended(peer)
    assert event.outcome is outcome and event.status == status
    assert event.reason_header == "Q.850;cause=16"
    assert event.classified_by == "status"
    assert outcome_for_status(status) is outcome


def test_class_defaults_for_unknown_codes() -> None:
    assert outcome_for_status(499) is CallOutcome.REJECTED
    assert outcome_for_status(599) is CallOutcome.FAILED
    assert outcome_for_status(699) is CallOutcome.DECLINED


def test_no_response_at_all_is_unreachable_after_timer_b() -> None:
    peer = Peer()
    start_call(peer, ring_timeout=60)
    peer.advance(31)
    assert len(peer.take()) == 5  # Timer A retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5 s
    peer.advance(2)
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE and event.status == 408


def test_transport_error_ends_the_call_at_once() -> None:
    peer = Peer()
    start_call(peer)
    peer.ua.transport_failed(PROXY, peer.now)
    peer.take()
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE and event.status == 503


def test_early_media_is_not_an_answer() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 183, headers=[("Content-Type", "application/sdp")], body=SDP_ANSWER)
    ringing = peer.last(CallRinging)
    assert isinstance(ringing, CallRinging) and ringing.early_media
    assert not [e for e in peer.events if isinstance(e, CallAnswered)]


def test_2xx_from_a_second_fork_is_acked_and_hung_up() -> None:
    peer = Peer()
    _, invite, _ = answered_call(peer)
    peer.take()
    peer.reply(
        invite, 200, headers=[("Contact", "<sip:alice@192.0.2.30>"),
                              ("Content-Type", "application/sdp")],
        body=SDP_ANSWER, to_tag="other-fork",
    )  # fmt: skip
    sent = [m for m in peer.take() if isinstance(m, Request)]
    assert [m.method for m in sent] == ["ACK", "BYE"]
    assert all(m.to.tag == "other-fork" for m in sent)
    assert all(str(m.uri) == "sip:alice@192.0.2.30" for m in sent)


def test_unusable_sdp_answer_is_acked_then_hung_up() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    g729 = SDP_ANSWER.replace(b"RTP/AVP 0 101", b"RTP/AVP 18").replace(
        b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:18 G729/8000"
    )
    peer.reply(
        invite, 200, headers=[("Contact", CONTACT), ("Content-Type", "application/sdp")],
        body=g729,
    )  # fmt: skip
    sent = [m for m in peer.take() if isinstance(m, Request)]
    assert [m.method for m in sent] == ["ACK", "BYE"]
    assert "cause=488" in (sent[1].headers.get("Reason") or "")
    peer.reply(sent[1], 200, to_tag=None)
    event = ended(peer)
    assert event.outcome is CallOutcome.FAILED and event.status == 488


def test_tcp_calls_never_retransmit() -> None:
    peer = Peer(ua_config(transport="tcp"))
    _, invite = start_call(peer, ring_timeout=60)
    assert invite.via.transport == "TCP"
    assert sip(invite.contacts[0].uri).get_param("transport") == "tcp"
    peer.advance(31)
    assert peer.take() == []
    peer.advance(2)
    assert ended(peer).outcome is CallOutcome.UNREACHABLE
