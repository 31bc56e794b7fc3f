"""A CANCEL that gets no answer, or cannot be sent, ends the call (RFC 3261 §9.1, §17.1.4):
the PBX died while the phone rang (docs/sip-failover.md)."""

from __future__ import annotations

from tests.sip.peer import PROXY, Peer
from tests.sip.test_call import ended, start_call
from voipalert.sip.events import CallEnded, CallOutcome
from voipalert.sip.message import Request


def _ringing_then_cancelled(peer: Peer) -> None:
    _, invite = start_call(peer, ring_timeout=5)
    peer.reply(invite, 180)
    peer.advance(6)
    peer.take_one("CANCEL")


def test_a_cancel_that_cannot_be_sent_ends_the_call_as_no_answer() -> None:
    peer = Peer()
    _ringing_then_cancelled(peer)
    peer.ua.transport_failed(PROXY, peer.now)
    peer.take()
    event = ended(peer)
    assert event.outcome is CallOutcome.NO_ANSWER and event.classified_by == "ring timeout"
    assert event.progress is not None and event.progress.ringing  # it rang: final


def test_a_cancel_never_answered_ends_the_call_after_64_t1() -> None:
    peer = Peer()
    _ringing_then_cancelled(peer)
    peer.advance(30)  # the CANCEL left at 5 s; its Timer F is 64*T1 = 32 s
    assert not [e for e in peer.events if isinstance(e, CallEnded)]
    peer.advance(2)
    assert ended(peer).outcome is CallOutcome.NO_ANSWER


def test_a_late_487_after_that_changes_nothing() -> None:
    peer = Peer()
    _ringing_then_cancelled(peer)
    peer.ua.transport_failed(PROXY, peer.now)
    peer.advance(40)
    assert len([e for e in peer.events if isinstance(e, CallEnded)]) == 1


def test_a_cancel_answered_200_but_no_487_ends_the_call_after_64_t1() -> None:
    # The PBX took the CANCEL and died before its 487: §9.1's 64*T1 still ends the call.
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=5)
    peer.reply(invite, 180)
    peer.advance(6)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    peer.reply(cancel, 200)
    peer.advance(30)
    assert not [e for e in peer.events if isinstance(e, CallEnded)]
    peer.advance(2)
    event = ended(peer)
    assert event.outcome is CallOutcome.NO_ANSWER and event.status is None
