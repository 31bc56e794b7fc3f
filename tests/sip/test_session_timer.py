"""Session timers as UAC (RFC 4028, docs/sip.md §4.13), on the fake clock of ``Peer``:
refresh at N/2 by UPDATE or re-INVITE, BYE when a refresh fails or the far end's refresh
does not come by N - min(32, N/3), one retry after 422, and the far end's UPDATE answered."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.sip.peer import SDP_ANSWER, Peer, ua_config
from tests.sip.test_agent import answer, request
from tests.sip.test_call import CONTACT, RECORD_ROUTE, ended, start_call
from voipalert.sip.events import CallAnswered, CallEnded, CallId, CallOutcome
from voipalert.sip.headers import HeaderInput
from voipalert.sip.message import Request, Response
from voipalert.sip.sessiontimer import (
    SessionExpires,
    agreed_as_uac,
    parse_min_se,
    parse_session_expires,
)

ALLOW_UPDATE = ("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE")
ALLOW_NO_UPDATE = ("Allow", "INVITE, ACK, BYE, CANCEL")


def answered(
    peer: Peer, *extra: HeaderInput, ring_timeout: float = 30.0
) -> tuple[CallId, Request, Response]:
    call_id, invite = start_call(peer, ring_timeout)
    ok = peer.reply(
        invite, 200,
        headers=[("Contact", CONTACT), *[("Record-Route", rr) for rr in RECORD_ROUTE],
                 ("Content-Type", "application/sdp"), *extra],
        body=SDP_ANSWER,
    )  # fmt: skip
    peer.take_one("ACK")
    assert isinstance(peer.last(CallAnswered), CallAnswered)
    return call_id, invite, ok


def sent(peer: Peer, method: str) -> list[Request]:
    distinct = {
        m.serialize(): m for m in peer.take() if isinstance(m, Request) and m.method == method
    }
    return list(distinct.values())


def from_far_end(
    ok: Response, invite: Request, method: str, extra: Sequence[HeaderInput] = (), **kw: object
) -> Request:
    return request(
        method, call_id=invite.call_id, from_=ok.headers.get("To") or "",
        to=invite.headers.get("From") or "", cseq=50, extra=extra, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_refresher_uac_sends_update_at_half_the_interval() -> None:
    peer = Peer()
    _, invite, _ = answered(peer, ("Session-Expires", "90;refresher=uac"), ALLOW_UPDATE)
    peer.advance(44.9)
    assert sent(peer, "UPDATE") == []
    peer.advance(0.2)
    (update,) = sent(peer, "UPDATE")
    assert update.headers.get("Session-Expires") == "90;refresher=uac"
    assert "timer" in update.supported
    assert update.cseq.seq == invite.cseq.seq + 1
    assert update.headers.get_all("Route") == ("<sip:192.0.2.11;lr>", "<sip:192.0.2.10;lr;ftag=x>")
    assert update.body == b""
    peer.reply(update, 200, headers=[("Session-Expires", "90;refresher=uac")])
    peer.advance(44.8)  # the next one is due 45 s after this refresh
    assert sent(peer, "UPDATE") == []
    peer.advance(0.3)
    (second,) = sent(peer, "UPDATE")
    assert second.cseq.seq == update.cseq.seq + 1


def test_without_update_the_refresh_is_a_reinvite_with_the_same_sdp() -> None:
    peer = Peer()
    _, invite, _ = answered(peer, ("Session-Expires", "120;refresher=uac"), ALLOW_NO_UPDATE)
    peer.advance(60.1)
    (reinvite,) = sent(peer, "INVITE")
    assert reinvite.body == invite.body  # same o= version: the session does not change
    assert reinvite.headers.get("Session-Expires") == "120;refresher=uac"
    assert reinvite.to.tag == "callee-tag"
    ok = peer.reply(
        reinvite, 200, headers=[("Contact", CONTACT), ("Session-Expires", "120;refresher=uac")]
    )
    (ack,) = sent(peer, "ACK")
    assert ack.cseq.seq == reinvite.cseq.seq and ack.cseq.method == "ACK"
    peer.deliver(ok)  # a retransmitted 2xx is ACKed again (§13.2.2.4)
    assert len(sent(peer, "ACK")) == 1
    assert not [e for e in peer.events if isinstance(e, CallEnded)]


def test_require_timer_without_refresher_makes_us_refresh() -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "100"), ("Require", "timer"), ALLOW_UPDATE)
    peer.advance(50.1)
    assert len(sent(peer, "UPDATE")) == 1


def test_no_session_expires_no_timer() -> None:
    peer = Peer()
    _, _, _ = answered(peer, ALLOW_UPDATE)
    peer.advance(4000)
    assert sent(peer, "UPDATE") == [] and sent(peer, "BYE") == []
    assert not [e for e in peer.events if isinstance(e, CallEnded)]


def test_timers_off_ignore_the_2xx_session_expires() -> None:
    peer = Peer(ua_config(session_timers=False))
    answered(peer, ("Session-Expires", "90;refresher=uac"), ALLOW_UPDATE)
    peer.advance(200)
    assert sent(peer, "UPDATE") == [] and sent(peer, "BYE") == []


@pytest.mark.parametrize("status", [481, 408])
def test_refresh_481_or_408_byes_the_call(status: int) -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "90;refresher=uac"), ALLOW_UPDATE)
    peer.advance(45.1)
    (update,) = sent(peer, "UPDATE")
    peer.reply(update, status)
    (bye,) = sent(peer, "BYE")
    assert bye.cseq.seq > update.cseq.seq
    assert "408" in (bye.headers.get("Reason") or "")
    peer.reply(bye, 200)
    event = ended(peer)
    assert event.outcome is CallOutcome.ANSWERED and event.answered
    assert event.reason.startswith(f"session refresh failed ({status}")


def test_refresh_without_any_answer_byes_the_call() -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "600;refresher=uac"), ALLOW_UPDATE)
    peer.advance(300.1)
    assert len(sent(peer, "UPDATE")) == 1
    peer.advance(33)  # Timer F (64*T1) with UDP retransmissions unanswered
    assert len(sent(peer, "BYE")) == 1


def test_refresh_other_failure_lets_the_session_lapse_at_expiry() -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "90;refresher=uac"), ALLOW_UPDATE)
    peer.advance(45.1)
    (update,) = sent(peer, "UPDATE")
    peer.reply(update, 500)
    peer.advance(14.0)  # expiry at 90 - 30 = 60 s after the answer
    assert sent(peer, "BYE") == [] and sent(peer, "UPDATE") == []
    peer.advance(1.0)
    assert len(sent(peer, "BYE")) == 1


def test_refresher_uas_no_refresh_bye_at_n_minus_a_third() -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "90;refresher=uas"), ALLOW_UPDATE)
    peer.advance(59.9)  # 90 - min(32, 90/3) = 60
    assert sent(peer, "UPDATE") == [] and sent(peer, "BYE") == []
    peer.advance(0.2)
    (bye,) = sent(peer, "BYE")
    peer.reply(bye, 200)
    assert ended(peer).reason == "session timer expired (no refresh)"


def test_refresher_uas_long_interval_waits_n_minus_32() -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "1800;refresher=uas"), ALLOW_UPDATE)
    peer.advance(1767.9)
    assert sent(peer, "BYE") == []
    peer.advance(0.2)
    assert len(sent(peer, "BYE")) == 1


def test_the_far_ends_update_refreshes_and_is_answered_with_its_interval() -> None:
    peer = Peer()
    _, invite, ok = answered(peer, ("Session-Expires", "90;refresher=uas"), ALLOW_UPDATE)
    peer.advance(50)
    update = from_far_end(
        ok, invite, "UPDATE",
        [("Session-Expires", "90;refresher=uac"), ("Supported", "timer")],
    )  # fmt: skip
    response = answer(peer, update)
    assert response.status == 200
    assert response.headers.get("Session-Expires") == "90;refresher=uac"
    assert response.require == ("timer",)
    assert response.contacts  # RFC 3311 §5.2: a target refresh answer
    peer.advance(59.9)  # now 60 s after this refresh
    assert sent(peer, "BYE") == []
    peer.advance(0.2)
    assert len(sent(peer, "BYE")) == 1


def test_the_far_ends_reinvite_refreshes_too() -> None:
    peer = Peer()
    _, invite, ok = answered(peer, ("Session-Expires", "90;refresher=uas"), ALLOW_UPDATE)
    peer.advance(50)
    reinvite = from_far_end(
        ok, invite, "INVITE", [("Session-Expires", "90;refresher=uac"), ("Supported", "timer"),
                               ("Content-Type", "application/sdp")], body=SDP_ANSWER,
    )  # fmt: skip
    peer.deliver(reinvite)
    response = next(m for m in peer.take() if isinstance(m, Response))
    assert response.status == 200 and response.headers.get("Session-Expires") == "90;refresher=uac"
    peer.deliver(from_far_end(ok, invite, "ACK", branch="z9hG4bKack50"))
    peer.advance(59.0)
    assert sent(peer, "BYE") == []


def test_update_without_sdp_gets_200_not_405() -> None:
    peer = Peer(ua_config(session_timers=False))
    _, invite, ok = answered(peer)
    response = answer(peer, from_far_end(ok, invite, "UPDATE"))
    assert response.status == 200
    assert "Session-Expires" not in response.headers


def test_update_asking_for_a_tiny_interval_gets_422_min_se() -> None:
    peer = Peer()
    _, invite, ok = answered(peer)
    update = from_far_end(ok, invite, "UPDATE", [("Session-Expires", "5;refresher=uas")])
    response = answer(peer, update)
    assert response.status == 422 and response.headers.get("Min-SE") == "90"


def test_require_timer_is_understood_only_with_timers_on() -> None:
    peer = Peer()
    _, invite, ok = answered(peer)
    headers = [("Session-Expires", "300"), ("Require", "timer"), ("Supported", "timer")]
    response = answer(peer, from_far_end(ok, invite, "UPDATE", headers))
    assert response.status == 200
    # No refresher named: the far end asked, the far end refreshes (we expect it).
    assert response.headers.get("Session-Expires") == "300;refresher=uac"
    peer = Peer(ua_config(session_timers=False))
    _, invite, ok = answered(peer)
    response = answer(peer, from_far_end(ok, invite, "UPDATE", headers))
    assert response.status == 420 and response.headers.get("Unsupported") == "timer"


def test_422_retries_the_invite_once_with_min_se() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 422, headers=[("Min-SE", "1200")])
    out = peer.take()
    acks = [m for m in out if isinstance(m, Request) and m.method == "ACK"]
    retries = [m for m in out if isinstance(m, Request) and m.method == "INVITE"]
    assert len(acks) == 1 and len(retries) == 1  # the 422 is ACKed by its transaction
    retry = retries[0]
    assert retry.call_id == invite.call_id and retry.from_.tag == invite.from_.tag
    assert retry.cseq.seq == invite.cseq.seq + 1 and retry.via.branch != invite.via.branch
    assert retry.headers.get("Session-Expires") == "1200"
    assert retry.headers.get("Min-SE") == "1200"
    assert not [e for e in peer.events if isinstance(e, CallEnded)]
    peer.reply(retry, 422, headers=[("Min-SE", "3600")])  # a second one ends the call
    assert [m for m in peer.take() if isinstance(m, Request) and m.method == "INVITE"] == []
    assert ended(peer).status == 422


def test_422_without_min_se_ends_the_call() -> None:
    peer = Peer()
    _, invite = start_call(peer)
    peer.reply(invite, 422, headers=[("Min-SE", "soon")])
    assert ended(peer).status == 422


def test_a_tiny_interval_in_the_2xx_is_raised_not_obeyed() -> None:
    peer = Peer()
    answered(peer, ("Session-Expires", "1;refresher=uac"), ALLOW_UPDATE)
    peer.advance(1.9)
    assert sent(peer, "UPDATE") == []
    peer.advance(0.2)
    (update,) = sent(peer, "UPDATE")
    assert update.headers.get("Session-Expires") == "4;refresher=uac"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1800;refresher=uac", SessionExpires(1800, "uac")),
        ("90 ; Refresher = UAS", SessionExpires(90, "uas")),
        ("90;refresher=both", SessionExpires(90, None)),
        ("90;foo", SessionExpires(90, None)),
        ("99999999999999", None),
        ("0", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        ("9" * 5000, None),
    ],
)
def test_parse_session_expires_never_raises(value: str, parsed: SessionExpires | None) -> None:
    message = Response.build(200, headers=[("Session-Expires", value), ("Min-SE", value)])
    assert parse_session_expires(message) == parsed
    assert parse_min_se(message) == (parsed.seconds if parsed else None)
    assert (agreed_as_uac(message, 0.0) is None) is (parsed is None)


def test_compact_form_x_is_read() -> None:
    message = Response.build(200, headers=[("x", "300;refresher=uas")])
    assert parse_session_expires(message) == SessionExpires(300, "uas")


def test_a_forged_update_from_elsewhere_refreshes_nothing() -> None:
    """In-dialog admission (docs/security.md): an UPDATE with the sniffed Call-ID and tags
    from a host that is not a dialog peer is dropped, so it cannot keep a dead call alive."""
    peer = Peer()
    _, invite, ok = answered(peer, ("Session-Expires", "90;refresher=uas"), ALLOW_UPDATE)
    peer.advance(50)
    forged = from_far_end(ok, invite, "UPDATE", [("Session-Expires", "90;refresher=uac")])
    peer.deliver(forged, ("198.51.100.9", 5060))
    assert peer.take() == []
    assert peer.ua.stats["untrusted_in_dialog"] == 1
    peer.advance(10.1)  # still 60 s after the answer, not after the forged refresh
    assert len(sent(peer, "BYE")) == 1


def test_an_update_with_a_bad_offer_gets_488_and_refreshes_nothing() -> None:
    peer = Peer()
    _, invite, ok = answered(peer, ("Session-Expires", "90;refresher=uas"), ALLOW_UPDATE)
    peer.advance(50)
    update = from_far_end(
        ok, invite, "UPDATE",
        [("Session-Expires", "90;refresher=uac"), ("Content-Type", "application/sdp")],
        body=b"v=0\r\nnonsense\r\n",
    )  # fmt: skip
    assert answer(peer, update).status == 488
    peer.advance(10.1)  # the failed UPDATE moved nothing: expiry 60 s after the answer
    assert len(sent(peer, "BYE")) == 1
