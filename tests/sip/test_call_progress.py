"""Call progress and early media (docs/sip.md §4.5.1): the ring clock starts at the first
provisional other than 100; a 183 with SDP is recorded, never an answer; a Q.850 cause
classifies what a generic status or our ring timeout cannot."""

from __future__ import annotations

import pytest

from tests.sip.peer import SDP_ANSWER, Peer, ua_config
from tests.sip.test_call import ended, start_call
from voipalert.sip.call import classify_failure, q850_cause
from voipalert.sip.events import CallAnswered, CallOutcome, CallProgress, DigitReceived
from voipalert.sip.message import Request, Response

SDP = [("Content-Type", "application/sdp")]


def test_ring_clock_starts_at_the_first_18x_not_at_the_invite() -> None:
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=20)
    peer.reply(invite, 100, to_tag=None)
    peer.advance(10)  # the PBX takes 10 s to find the phone
    peer.reply(invite, 180)
    peer.advance(19.9)
    assert [m for m in peer.take() if isinstance(m, Request) and m.method == "CANCEL"] == []
    peer.advance(0.2)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    peer.reply(cancel, 200)
    peer.reply(invite, 487)
    event = ended(peer)
    assert event.outcome is CallOutcome.NO_ANSWER and event.classified_by == "ring timeout"
    assert event.progress is not None and event.progress.first_at == 10.0
    assert event.progress.ringing and not event.progress.early_media


def test_only_100_trying_until_the_setup_limit_is_unreachable() -> None:
    peer = Peer(ua_config(setup_timeout=32.0))
    _, invite = start_call(peer, ring_timeout=60)
    peer.reply(invite, 100, to_tag=None)
    peer.advance(31.9)
    assert [m for m in peer.take() if isinstance(m, Request) and m.method == "CANCEL"] == []
    peer.advance(0.2)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    peer.reply(cancel, 200)
    peer.reply(invite, 487)
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE and event.classified_by == "setup timeout"
    assert event.progress is None


def test_no_response_at_all_is_still_timer_b() -> None:
    peer = Peer()
    start_call(peer, ring_timeout=60)
    peer.advance(40)
    peer.take()
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE and event.status == 408


def test_183_with_sdp_then_486_is_busy_with_early_media_recorded() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.advance(1)
    peer.reply(invite, 183, headers=SDP, body=SDP_ANSWER)
    peer.advance(5)
    peer.reply(invite, 486)
    peer.take_one("ACK")
    assert not [e for e in peer.events if isinstance(e, CallAnswered)]
    event = ended(peer)
    assert event.outcome is CallOutcome.BUSY and event.status == 486
    assert event.progress == CallProgress(1.0, 183, "Session Progress", early_media=True)
    assert event.progress.describe() == "183 Session Progress (early media only, no ringing)"


def test_announcement_with_a_cause_then_ring_timeout_is_unreachable() -> None:
    """ "The number you dialled is not reachable", carried as 183 + SDP with Q.850 cause 20
    (subscriber absent), and the carrier never sends a final answer."""
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=15)
    peer.reply(invite, 183, headers=[*SDP, ("Reason", 'Q.850;cause=20;text="absent"')],
               body=SDP_ANSWER)  # fmt: skip
    peer.advance(15.1)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    peer.reply(cancel, 200)
    peer.reply(invite, 487)
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE and event.classified_by == "cause"
    assert event.progress is not None and event.progress.cause == 20


def test_early_media_without_cause_then_ring_timeout_is_no_answer() -> None:
    peer = Peer()
    _, invite = start_call(peer, ring_timeout=15)
    peer.reply(invite, 183, headers=SDP, body=SDP_ANSWER)
    peer.advance(15.1)
    cancel = peer.take_one("CANCEL")
    assert isinstance(cancel, Request)
    peer.reply(invite, 487)
    event = ended(peer)
    assert event.outcome is CallOutcome.NO_ANSWER and event.classified_by == "ring timeout"
    assert event.progress is not None and event.progress.early_media


def test_a_generic_final_gives_way_to_the_early_cause() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 183, headers=[*SDP, ("Reason", "Q.850;cause=17")], body=SDP_ANSWER)
    peer.reply(invite, 503)
    event = ended(peer)
    assert event.outcome is CallOutcome.BUSY and event.classified_by == "cause"


def test_ringing_then_early_media_keeps_both_facts() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 180)
    peer.reply(invite, 183, headers=SDP, body=SDP_ANSWER)
    peer.reply(invite, 480)
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE
    assert event.progress is not None and event.progress.ringing and event.progress.early_media
    assert event.progress.describe() == "183 Session Progress (early media)"


@pytest.mark.parametrize(
    ("status", "cause", "outcome", "by"),
    [
        (486, 1, CallOutcome.BUSY, "status"),  # a status of the table speaks for itself
        (500, 17, CallOutcome.BUSY, "cause"),
        (503, 1, CallOutcome.UNREACHABLE, "cause"),
        (502, 27, CallOutcome.UNREACHABLE, "cause"),
        (500, 19, CallOutcome.NO_ANSWER, "cause"),
        (500, 21, CallOutcome.DECLINED, "cause"),
        (500, 16, CallOutcome.FAILED, "status"),  # normal clearing tells nothing
        (500, None, CallOutcome.FAILED, "status"),
    ],
)
def test_classify_failure(status: int, cause: int | None, outcome: CallOutcome, by: str) -> None:
    assert classify_failure(status, cause) == (outcome, by)


def test_q850_cause_is_read_from_the_reason_header() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    response = peer.reply(
        invite, 183, headers=[("Reason", 'SIP;cause=200;text="x", Q.850;cause=17')]
    )
    assert isinstance(response, Response)
    assert q850_cause(response) == 17
    bad = peer.reply(invite, 183, headers=[("Reason", "Q.850;cause=abc")])
    assert q850_cause(bad) is None


def test_info_key_in_the_early_dialog_is_refused_and_counts_nothing() -> None:
    """A "press 1" sent as SIP INFO during early media: no confirmed dialog yet, so 481."""
    peer = Peer()
    _, invite = start_call(peer)
    progress = peer.reply(invite, 183, headers=SDP, body=SDP_ANSWER)
    info = Request.build(
        "INFO", invite.contacts[0].uri,
        headers=[
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinfo1"),
            ("Max-Forwards", "70"),
            ("From", str(progress.to)), ("To", str(invite.from_)),
            ("Call-ID", invite.call_id), ("CSeq", "1 INFO"),
            ("Content-Type", "application/dtmf-relay"),
        ],
        body=b"Signal=1\r\nDuration=160\r\n",
    )  # fmt: skip
    peer.deliver(info)
    answer = peer.take_one(481)
    assert isinstance(answer, Response)
    assert not [e for e in peer.events if isinstance(e, DigitReceived)]
