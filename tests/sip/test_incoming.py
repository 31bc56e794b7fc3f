"""Call-in at the SIP layer: an INVITE someone sends us is answered 180, handed to the owner
(``IncomingCall``), then answered 200 with our SDP, or refused; the limits still apply."""

from __future__ import annotations

import random

from tests.sip.peer import PROXY, SDP_ANSWER, Peer, ua_config
from tests.sip.test_agent import request
from voipalert.codec import Codec
from voipalert.sip.events import (
    CallEnded,
    CallId,
    CallOutcome,
    DigitReceived,
    IncomingCall,
)
from voipalert.sip.message import Request, Response
from voipalert.sip.sdp import LocalMedia, new_local_media
from voipalert.sip.uri import SipUri

SDP = [("Content-Type", "application/sdp")]
CONTACT = [("Contact", "<sip:alice@192.0.2.20:5161>"),
           ("Record-Route", "<sip:192.0.2.10;lr>")]  # fmt: skip
OFFER = SDP_ANSWER  # a PCMU + telephone-event offer


def invite(branch: str = "z9hG4bKin1", call_id: str = "in-1@pbx", **kwargs: object) -> Request:
    values: dict[str, object] = {
        "branch": branch, "call_id": call_id, "from_": "<sip:201@192.0.2.10>;tag=caller",
        "extra": [*SDP, *CONTACT], "body": OFFER,
    }  # fmt: skip
    values.update(kwargs)
    return request("INVITE", **values)  # type: ignore[arg-type]


def callin_peer(**overrides: object) -> Peer:
    return Peer(ua_config(max_incoming_calls=2, **overrides))


def responses(peer: Peer) -> list[Response]:
    return [m for m in peer.take() if isinstance(m, Response)]


def media() -> LocalMedia:
    return new_local_media("192.0.2.1", 30000, rng=random.Random(1))


def test_disabled_call_in_still_refuses_486() -> None:
    peer = Peer()
    peer.deliver(invite())
    assert [r.status for r in responses(peer)] == [486]
    assert peer.events == []


def test_incoming_call_rings_then_is_answered_with_sdp() -> None:
    peer = callin_peer()
    peer.deliver(invite())
    ringing = responses(peer)
    assert [r.status for r in ringing] == [180]
    assert ringing[0].headers.get("Record-Route") == "<sip:192.0.2.10;lr>"
    event = peer.last(IncomingCall)
    assert isinstance(event, IncomingCall)
    assert event.caller is not None and event.caller.user == "201"
    assert event.asserted is None  # no trusted hosts: nobody may assert an identity
    local = new_local_media("192.0.2.1", 30000, rng=random.Random(1))
    remote = peer.ua.answer_call(CallId("in-1@pbx"), local, peer.now)
    assert remote is not None and remote.port == 40000 and remote.codec is Codec.PCMU
    ok = responses(peer)
    assert [r.status for r in ok] == [200]
    assert ok[0].to.tag == ringing[0].to.tag
    assert b"m=audio 30000 RTP/AVP 0 101" in ok[0].body
    assert ok[0].contacts
    assert peer.ua.active_calls == 1
    # The ACK stops the 2xx retransmissions; a key by INFO reaches the owner; their BYE ends.
    tags = {"from_": "<sip:201@192.0.2.10>;tag=caller", "to": ok[0].headers.get("To") or ""}
    peer.deliver(request("ACK", branch="z9hG4bKack", call_id="in-1@pbx", **tags))  # type: ignore[arg-type]
    peer.advance(10.0)
    assert responses(peer) == []
    info = request("INFO", branch="z9hG4bKinfo", call_id="in-1@pbx", cseq=2,
                   extra=[("Content-Type", "application/dtmf-relay")],
                   body=b"Signal=1\r\nDuration=160\r\n", **tags)  # fmt: skip
    peer.deliver(info)
    assert [r.status for r in responses(peer)] == [200]
    assert [e.digit for e in peer.events if isinstance(e, DigitReceived)] == ["1"]
    peer.deliver(request("BYE", branch="z9hG4bKbye", call_id="in-1@pbx", cseq=3, **tags))  # type: ignore[arg-type]
    assert [r.status for r in responses(peer)] == [200]
    ended = peer.last(CallEnded)
    assert isinstance(ended, CallEnded) and ended.hung_up_by == "remote"


def test_we_hang_up_an_incoming_call_with_bye_to_the_contact_via_the_route() -> None:
    peer = callin_peer()
    peer.deliver(invite())
    peer.take()
    peer.ua.answer_call(CallId("in-1@pbx"), media(), peer.now)
    peer.take()
    peer.ua.hang_up(CallId("in-1@pbx"), peer.now)
    bye = peer.take_one("BYE")
    assert isinstance(bye, Request)
    assert str(bye.uri) == "sip:alice@192.0.2.20:5161"
    assert bye.headers.get("Route") == "<sip:192.0.2.10;lr>"
    assert bye.from_.tag is not None and bye.to.tag == "caller"
    assert peer.destination_of(bye) == PROXY


def test_no_ack_ends_the_call_with_bye() -> None:
    peer = callin_peer()
    peer.deliver(invite())
    peer.ua.answer_call(CallId("in-1@pbx"), media(), peer.now)
    peer.advance(40.0)
    peer.take()
    assert peer.requests("BYE")


def test_invite_without_sdp_or_common_codec_gets_488() -> None:
    peer = callin_peer()
    peer.deliver(invite(extra=CONTACT, body=b""))
    assert [r.status for r in responses(peer)] == [488]
    g729 = OFFER.replace(b"RTP/AVP 0 101", b"RTP/AVP 18 101").replace(
        b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:18 G729/8000"
    )
    peer.deliver(invite(branch="z9hG4bKin2", call_id="in-2@pbx", body=g729))
    assert [r.status for r in responses(peer)] == [488]
    assert not [e for e in peer.events if isinstance(e, IncomingCall)]
    assert peer.ua.stats["incoming_488"] == 2


def test_concurrent_incoming_calls_are_bounded() -> None:
    peer = callin_peer(unsolicited_per_second=1000.0)
    statuses = []
    for i in range(4):
        peer.deliver(invite(branch=f"z9hG4bKn{i}", call_id=f"in-{i}@pbx"))
        statuses += [r.status for r in responses(peer)]
    assert statuses == [180, 180, 486, 486]
    assert peer.ua.stats["incoming_busy"] == 2


def test_invite_flood_is_still_rate_limited() -> None:
    peer = callin_peer(unsolicited_per_second=1.0)
    for i in range(20):
        peer.deliver(invite(branch=f"z9hG4bKf{i}", call_id=f"f-{i}@x"), ("203.0.113.9", 5060))
    assert peer.ua.stats["rate_limited"] >= 15
    assert len([e for e in peer.events if isinstance(e, IncomingCall)]) <= 2


def test_untrusted_host_is_not_admitted_and_asserted_identity_only_from_trusted() -> None:
    peer = callin_peer(trusted_hosts=frozenset({"192.0.2.10"}))
    pai = [*SDP, *CONTACT, ("P-Asserted-Identity", "<sip:202@192.0.2.10>")]
    peer.deliver(invite(extra=pai), ("203.0.113.9", 5060))
    assert peer.take() == []
    assert peer.ua.stats["untrusted"] == 1
    peer.deliver(invite(extra=pai))
    event = peer.last(IncomingCall)
    assert isinstance(event, IncomingCall)
    assert event.asserted == SipUri(user="202", host="192.0.2.10")
    open_peer = callin_peer()
    open_peer.deliver(invite(extra=pai))
    untrusted = open_peer.last(IncomingCall)
    assert isinstance(untrusted, IncomingCall) and untrusted.asserted is None


def test_cancel_before_the_answer_ends_it_for_the_owner() -> None:
    peer = callin_peer()
    peer.deliver(invite())
    peer.take()
    cancel = request("CANCEL", branch="z9hG4bKin1", call_id="in-1@pbx",
                     from_="<sip:201@192.0.2.10>;tag=caller")  # fmt: skip
    peer.deliver(cancel)
    assert sorted(r.status for r in responses(peer)) == [200, 487]
    ended = peer.last(CallEnded)
    assert isinstance(ended, CallEnded) and ended.outcome is CallOutcome.CANCELLED
    assert peer.ua.answer_call(CallId("in-1@pbx"), media(), peer.now) is None


def test_unanswered_incoming_call_is_refused_480() -> None:
    peer = callin_peer(incoming_answer_seconds=5.0)
    peer.deliver(invite())
    peer.take()
    peer.advance(6.0)
    assert 480 in [r.status for r in responses(peer)]
    assert isinstance(peer.last(CallEnded), CallEnded)


def test_reject_call_answers_the_status_given() -> None:
    peer = callin_peer()
    peer.deliver(invite())
    peer.take()
    peer.ua.reject_call(CallId("in-1@pbx"), 603, peer.now)
    assert [r.status for r in responses(peer)] == [603]


def test_invite_without_contact_or_from_tag_is_refused_400_without_state() -> None:
    peer = callin_peer(unsolicited_per_second=1000.0)
    peer.deliver(invite(extra=SDP))  # no Contact: nowhere to send our BYE
    peer.deliver(invite(branch="z9hG4bKnt", call_id="nt@x", from_="<sip:201@192.0.2.10>"))
    assert [r.status for r in responses(peer)] == [400, 400]
    assert not [e for e in peer.events if isinstance(e, IncomingCall)]
    assert peer.ua.active_calls == 0


def test_the_same_call_id_on_another_branch_is_not_a_second_call() -> None:
    peer = callin_peer(unsolicited_per_second=1000.0)
    peer.deliver(invite())
    peer.deliver(invite(branch="z9hG4bKother"))
    assert [r.status for r in responses(peer)] == [180, 482]
    assert len([e for e in peer.events if isinstance(e, IncomingCall)]) == 1


def test_a_retransmitted_invite_gets_the_180_then_is_absorbed_after_the_200() -> None:
    peer = callin_peer()
    peer.deliver(invite())
    peer.deliver(invite())  # before the answer: the 180 again
    assert [r.status for r in responses(peer)] == [180, 180]
    peer.ua.answer_call(CallId("in-1@pbx"), media(), peer.now)
    assert [r.status for r in responses(peer)] == [200]
    peer.deliver(invite())  # RFC 6026 Accepted: absorbed, never a 482 for our own call
    assert responses(peer) == []
    assert peer.ua.active_calls == 1
