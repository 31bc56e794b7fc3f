"""Reliable provisionals as UAC (RFC 3262, docs/sip.md §4.13): a 1xx with ``Require: 100rel``
and ``RSeq`` gets a PRACK in its early dialog; retransmissions and RSeqs out of order get
none; every fork its own; the CSeq space stays ordered (INVITE < PRACK < BYE)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.sip.peer import CHALLENGE, PROXY, SDP_ANSWER, Peer, sip, ua_config
from tests.sip.test_call import CONTACT, RECORD_ROUTE, ended, start_call
from voipalert.sip.call import MAX_EARLY_DIALOGS
from voipalert.sip.events import CallAnswered, CallEnded, CallOutcome, CallRinging
from voipalert.sip.headers import HeaderInput
from voipalert.sip.message import Request, Response

SDP: list[HeaderInput] = [("Content-Type", "application/sdp")]
EARLY_CONTACT = "<sip:alice@192.0.2.20:5161;transport=udp>"


def reliable(rseq: str, *, contact: str = EARLY_CONTACT) -> list[HeaderInput]:
    return [
        ("Require", "100rel"), ("RSeq", rseq), ("Contact", contact),
        *[("Record-Route", rr) for rr in RECORD_ROUTE], *SDP,
    ]  # fmt: skip


def pracks(sent: Sequence[Request | Response]) -> list[Request]:
    distinct = {m.serialize(): m for m in sent if isinstance(m, Request) and m.method == "PRACK"}
    return list(distinct.values())


def ringing(peer: Peer) -> list[CallRinging]:
    return [e for e in peer.events if isinstance(e, CallRinging)]


def test_reliable_183_is_pracked_in_its_early_dialog() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 100, to_tag=None)
    peer.reply(invite, 183, headers=reliable("7"), body=SDP_ANSWER)
    prack = peer.take_one("PRACK")
    assert isinstance(prack, Request)
    # §12.1.2: Request-URI = the 1xx's Contact, Route = its Record-Route reversed.
    assert sip(prack.uri).host == "192.0.2.20" and sip(prack.uri).port == 5161
    assert prack.headers.get_all("Route") == ("<sip:192.0.2.11;lr>", "<sip:192.0.2.10;lr;ftag=x>")
    assert peer.destination_of(prack) == ("192.0.2.11", 5060)
    assert prack.to.tag == "callee-tag" and prack.from_.tag == invite.from_.tag
    assert prack.call_id == invite.call_id
    assert prack.headers.get("RAck") == f"7 {invite.cseq.seq} INVITE"
    assert prack.cseq.seq == invite.cseq.seq + 1 and prack.cseq.method == "PRACK"
    assert prack.via.branch != invite.via.branch
    # Progress handling is unchanged: early media, no answer.
    assert [e.status for e in ringing(peer)] == [183] and ringing(peer)[0].early_media
    peer.reply(prack, 200)
    assert peer.take() == []


def test_cseq_order_invite_prack_then_ack_and_bye_above() -> None:
    peer = Peer()
    call_id, invite = start_call(peer)
    peer.reply(invite, 183, headers=reliable("1"), body=SDP_ANSWER)
    first = peer.take_one("PRACK")
    peer.reply(invite, 180, headers=[*reliable("2")[:2], ("Contact", EARLY_CONTACT)])
    second = peer.take_one("PRACK")
    assert isinstance(first, Request) and isinstance(second, Request)
    assert second.headers.get("RAck") == f"2 {invite.cseq.seq} INVITE"
    assert invite.cseq.seq < first.cseq.seq < second.cseq.seq
    ok_headers = [("Contact", CONTACT), *[("Record-Route", rr) for rr in RECORD_ROUTE], *SDP]
    peer.reply(invite, 200, headers=ok_headers, body=SDP_ANSWER)
    ack = peer.take_one("ACK")
    assert isinstance(ack, Request) and ack.cseq.seq == invite.cseq.seq  # §13.2.2.4
    peer.ua.hang_up(call_id, peer.now)
    bye = peer.take_one("BYE")
    assert isinstance(bye, Request)
    assert bye.cseq.seq > second.cseq.seq  # the dialog continues above the PRACKs
    peer.reply(bye, 200)
    assert ended(peer).outcome is CallOutcome.ANSWERED


def test_retransmitted_rseq_is_not_pracked_again_nor_processed() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    for _ in range(3):  # the UAS retransmits until our PRACK arrives (§3)
        peer.reply(invite, 183, headers=reliable("1"), body=SDP_ANSWER)
    assert len(pracks(peer.take())) == 1
    assert len(ringing(peer)) == 1


def test_rseq_out_of_order_is_ignored_then_the_next_one_is_pracked() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 183, headers=reliable("10"), body=SDP_ANSWER)
    peer.take()
    peer.reply(invite, 180, headers=reliable("12"))  # 11 missing: §7.1, not processed
    peer.reply(invite, 180, headers=reliable("9"))  # older
    assert pracks(peer.take()) == []
    assert [e.status for e in ringing(peer)] == [183]
    peer.reply(invite, 180, headers=reliable("11"))
    (prack,) = pracks(peer.take())
    assert prack.headers.get("RAck") == f"11 {invite.cseq.seq} INVITE"
    assert [e.status for e in ringing(peer)] == [183, 180]


def test_each_fork_gets_its_own_prack() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 180, headers=reliable("1"), to_tag="fork-a")
    peer.reply(invite, 180, headers=reliable("1", contact="<sip:bob@192.0.2.30>"), to_tag="fork-b")
    peer.reply(invite, 180, headers=reliable("1"), to_tag="fork-a")  # retransmission
    sent = pracks(peer.take())
    assert [p.to.tag for p in sent] == ["fork-a", "fork-b"]
    assert sip(sent[1].uri).host == "192.0.2.30"
    assert sent[0].cseq.seq < sent[1].cseq.seq
    assert {p.headers.get("RAck") for p in sent} == {f"1 {invite.cseq.seq} INVITE"}


def test_a_flood_of_fork_tags_is_bounded() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    for n in range(MAX_EARLY_DIALOGS + 10):
        peer.reply(invite, 180, headers=reliable("1"), to_tag=f"fork-{n}")
    assert len(pracks(peer.take())) == MAX_EARLY_DIALOGS


def test_prack_failure_does_not_end_the_call() -> None:
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=120)
    peer.reply(invite, 183, headers=reliable("1"), body=SDP_ANSWER)
    prack = peer.take_one("PRACK")
    assert isinstance(prack, Request)
    peer.reply(prack, 481)
    peer.reply(invite, 180, headers=reliable("2"))
    second = peer.take_one("PRACK")
    assert isinstance(second, Request)
    peer.advance(40)  # Timer F: the second PRACK times out
    assert not [e for e in peer.events if isinstance(e, CallEnded)]
    assert pracks(peer.take()) == [second]  # only its retransmissions, no new PRACK
    peer.reply(invite, 200, headers=[("Contact", CONTACT), *SDP], body=SDP_ANSWER)
    assert isinstance(peer.last(CallAnswered), CallAnswered)


def test_unreliable_or_unusable_provisionals_get_no_prack() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 180)  # no Require
    peer.reply(invite, 181, headers=[("Require", "100rel")])  # no RSeq
    for bad in ("0", "-1", "abc", "99999999999", str(2**31)):
        peer.reply(invite, 182, headers=[("Require", "100rel"), ("RSeq", bad)])
    peer.reply(invite, 183, headers=reliable("1"), to_tag=None)  # no tag: no dialog
    assert pracks(peer.take()) == []
    assert [e.status for e in ringing(peer)] == [180, 181, *[182] * 5, 183]


def test_supported_100rel_can_be_turned_off() -> None:
    peer = Peer(ua_config(reliable_provisionals=False))
    _, invite = start_call(peer)
    assert invite.supported == ("timer",)
    # A UAS that requires it anyway is still acknowledged: better than its retransmitting
    # the 1xx for 32 s and failing the call.
    peer.reply(invite, 183, headers=reliable("1"), body=SDP_ANSWER)
    assert len(pracks(peer.take())) == 1
    peer = Peer(ua_config(reliable_provisionals=False, session_timers=False))
    _, invite = start_call(peer)
    assert "Supported" not in invite.headers


def test_prack_goes_to_the_route_of_a_proxy_we_sent_through() -> None:
    """Without Record-Route, the PRACK goes straight to the 1xx's Contact."""
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(
        invite, 183, headers=[("Require", "100rel"), ("RSeq", "5"), ("Contact", EARLY_CONTACT)]
    )
    prack = peer.take_one("PRACK")
    assert isinstance(prack, Request)
    assert "Route" not in prack.headers
    assert peer.destination_of(prack) == ("192.0.2.20", 5161)
    assert PROXY != ("192.0.2.20", 5161)


def test_a_new_invite_after_a_challenge_starts_the_rseq_spaces_again() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 183, headers=reliable("4"), body=SDP_ANSWER)
    (first,) = pracks(peer.take())
    peer.reply(invite, 407, headers=[("Proxy-Authenticate", CHALLENGE)])
    retry = peer.take_one("INVITE")
    assert isinstance(retry, Request)
    assert retry.cseq.seq == first.cseq.seq + 1  # above the PRACK, too
    peer.reply(retry, 183, headers=reliable("1"), body=SDP_ANSWER)
    (second,) = pracks(peer.take())
    assert second.headers.get("RAck") == f"1 {retry.cseq.seq} INVITE"
    assert second.cseq.seq == retry.cseq.seq + 1
