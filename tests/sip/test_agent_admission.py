"""Admission of every request: a stranger who knows a dialog's Call-ID and tags (sniffed
from plaintext SIP) can neither acknowledge, end nor move the call, nor crowd out the
PBX's requests from the server transaction table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.sip.peer import PROXY, SDP_ANSWER, Peer, ua_config
from tests.sip.test_agent import answer, request
from tests.sip.test_call import answered_call
from voipalert.sip.events import CallEnded, CallMediaChanged, DigitReceived
from voipalert.sip.message import Request

STRANGER = ("203.0.113.66", 5060)
CONTACT_HOST = ("192.0.2.20", 5161)  # the callee's Contact: the dialog's remote target
DTMF = [("Content-Type", "application/dtmf-relay")]


@dataclass(frozen=True)
class Ids:
    """What a sniffer learns from the answered INVITE: Call-ID and both tagged headers."""

    call_id: str
    theirs: str  # the 2xx's To, with the callee's tag
    ours: str  # our From, with our tag


def _answered(peer: Peer) -> Ids:
    _, invite, ok = answered_call(peer)
    peer.take()
    return Ids(invite.call_id, ok.headers.get("To") or "", invite.headers.get("From") or "")


def _dialog_request(ids: Ids, method: str, branch: str, **kwargs: object) -> Request:
    """A request carrying the answered call's Call-ID and both tags."""
    return request(
        method, branch=branch, call_id=ids.call_id, from_=ids.theirs, to=ids.ours, cseq=100,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def _digits(peer: Peer) -> list[str]:
    return [e.digit for e in peer.events if isinstance(e, DigitReceived)]


@pytest.mark.parametrize("trusted", [None, frozenset({"192.0.2.10"})])
def test_info_with_the_right_ids_from_another_host_is_ignored(
    trusted: frozenset[str] | None,
) -> None:
    peer = Peer(ua_config(trusted_hosts=trusted))
    ids = _answered(peer)
    body = b"Signal=1\r\nDuration=160\r\n"
    forged = _dialog_request(ids, "INFO", "z9hG4bKforged", extra=DTMF, body=body)
    peer.deliver(forged, STRANGER)
    assert peer.take() == []  # not even a response: nothing to learn from us
    assert _digits(peer) == []
    assert peer.ua.stats["untrusted_in_dialog"] == 1
    real = _dialog_request(ids, "INFO", "z9hG4bKreal", extra=DTMF, body=body)
    assert answer(peer, real, PROXY).status == 200
    assert _digits(peer) == ["1"]


def test_bye_reinvite_and_ack_from_another_host_change_nothing() -> None:
    peer = Peer()
    ids = _answered(peer)
    sdp = [("Content-Type", "application/sdp")]
    moved = SDP_ANSWER.replace(b"192.0.2.20", b"203.0.113.66")
    for method, extra, body in (
        ("BYE", [], b""),
        ("INVITE", sdp, moved),
        ("ACK", sdp, moved),
    ):
        peer.deliver(_dialog_request(ids, method, f"z9hG4bK{method}", extra=extra, body=body),
                     STRANGER)  # fmt: skip
    assert peer.take() == []
    assert not [e for e in peer.events if isinstance(e, CallEnded | CallMediaChanged)]
    assert peer.ua.stats["untrusted_in_dialog"] == 3


@pytest.mark.parametrize("source", [PROXY, ("192.0.2.11", 5060), CONTACT_HOST])
def test_the_route_set_and_the_remote_target_may_end_the_call(source: tuple[str, int]) -> None:
    peer = Peer()
    ids = _answered(peer)
    assert answer(peer, _dialog_request(ids, "BYE", "z9hG4bKbye"), source).status == 200
    assert isinstance(peer.last(CallEnded), CallEnded)


def test_a_retransmission_from_another_host_is_not_answered() -> None:
    peer = Peer()
    options = request("OPTIONS", branch="z9hG4bKonce")
    assert answer(peer, options).status == 200
    peer.deliver(options, STRANGER)  # same branch and sent-by, other source
    assert peer.take() == []
    assert peer.ua.stats["foreign_retransmission"] == 1
    peer.deliver(options, PROXY)
    assert len(peer.take()) == 1  # the real retransmission is still absorbed and answered


def test_a_flood_of_tagged_requests_from_one_stranger_cannot_block_the_real_bye() -> None:
    peer = Peer(ua_config(unsolicited_per_second=1000.0))
    ids = _answered(peer)
    for n in range(1000):
        # Half carry the sniffed dialog ids, half tags of no dialog of ours.
        if n % 2:
            flood = _dialog_request(ids, "BYE", f"z9hG4bKflood{n}")
        else:
            flood = request("BYE", branch=f"z9hG4bKflood{n}", to=f"<sip:x@y>;tag=t{n}")
        peer.deliver(flood, STRANGER)
    answered = peer.take()
    assert len(answered) == 32  # 481s, up to the per-source cap; the rest dropped
    assert peer.ua.stats["untrusted_in_dialog"] == 500
    assert peer.ua.stats["overload"] == 500 - 32
    bye = _dialog_request(ids, "BYE", "z9hG4bKrealbye")
    assert answer(peer, bye, PROXY).status == 200
    assert isinstance(peer.last(CallEnded), CallEnded)


def test_strangers_together_hold_at_most_half_the_table() -> None:
    peer = Peer(ua_config(unsolicited_per_second=1e6, max_server_transactions=64))
    ids = _answered(peer)
    for n in range(1000):  # spoofed sources: every request from another address
        flood = request("OPTIONS", branch=f"z9hG4bKspoof{n}")
        peer.deliver(flood, (f"198.18.{n // 250}.{n % 250 + 1}", 5060))
    assert len(peer.take()) == 32
    # The PBX still has the other half: its BYE (and its keep-alives) are answered.
    assert answer(peer, _dialog_request(ids, "BYE", "z9hG4bKbye"), PROXY).status == 200
    for n in range(20):
        assert answer(peer, request("OPTIONS", branch=f"z9hG4bKpbx{n}"), PROXY).status == 200
    assert isinstance(peer.last(CallEnded), CallEnded)


def test_transactions_are_released_per_source_when_they_end() -> None:
    peer = Peer(ua_config(unsolicited_per_second=1e6))
    for n in range(40):
        peer.deliver(request("OPTIONS", branch=f"z9hG4bKa{n}"), STRANGER)
    assert len(peer.take()) == 32
    peer.advance(40.0)  # Timer J (64*T1) ends them
    peer.deliver(request("OPTIONS", branch="z9hG4bKlater"), STRANGER)
    assert len(peer.take()) == 1
