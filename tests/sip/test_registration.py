"""REGISTER flows against a scripted registrar (docs/sip.md §4.4)."""

from __future__ import annotations

import pytest

from tests.sip.peer import CHALLENGE, OUR_HOST, OUR_PORT, PROXY, Peer, sip, ua_config
from voipalert.sip.events import RegistrationChanged, RegistrationState
from voipalert.sip.message import Request
from voipalert.sip.registration import refresh_delay
from voipalert.sip.uri import SipUri

RS = RegistrationState


def register_once(peer: Peer) -> Request:
    peer.ua.register(peer.now)
    request = peer.take_one("REGISTER")
    assert isinstance(request, Request)
    return request


def authenticate(peer: Peer, first: Request, *, expires: str = "120") -> Request:
    peer.reply(first, 401, headers=[("WWW-Authenticate", CHALLENGE)])
    second = peer.take_one("REGISTER")
    assert isinstance(second, Request)
    peer.reply(
        second,
        200,
        headers=[("Contact", f"<sip:voipalert@{OUR_HOST}:{OUR_PORT}>;expires={expires}")],
    )
    return second


def test_register_401_then_200() -> None:
    peer = Peer()
    first = register_once(peer)
    assert str(first.uri) == "sip:192.0.2.10"
    assert first.via.branch is not None and first.via.branch.startswith("z9hG4bK")
    assert first.via.has_rport
    assert first.via.sent_by == f"{OUR_HOST}:{OUR_PORT}"
    assert first.headers.get("Expires") == "600"
    assert sip(first.contacts[0].uri).host == OUR_HOST
    assert first.from_.uri == first.to.uri
    assert first.from_.tag is not None and first.to.tag is None
    assert peer.destination_of(first) == PROXY
    assert "Authorization" not in first.headers

    second = authenticate(peer, first)
    auth = second.headers.get("Authorization") or ""
    assert 'username="voipalert"' in auth
    assert 'uri="sip:192.0.2.10"' in auth  # digest-uri = the Request-URI (pyVoIP)
    assert "qop=auth" in auth and "nc=00000001" in auth
    assert second.via.branch != first.via.branch  # new branch per transaction (#167)
    assert second.call_id == first.call_id  # §10.2.4: one Call-ID per binding
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.from_.tag == first.from_.tag

    status = peer.ua.registration
    assert status is not None and status.state is RS.REGISTERED
    assert status.expires_at == pytest.approx(peer.now + 120)
    assert status.last_status == 200


def test_refresh_before_the_granted_expiry_and_keep_the_call_id() -> None:
    peer = Peer()
    first = register_once(peer)
    authenticate(peer, first, expires="120")
    peer.advance(refresh_delay(120) - 1)
    assert peer.take() == []
    peer.advance(1.1)  # due at 88 s; the first retransmission would come at 88.5 s
    refresh = peer.take_one("REGISTER")
    assert isinstance(refresh, Request)
    assert refresh.call_id == first.call_id
    assert refresh.cseq.seq == first.cseq.seq + 2
    assert peer.ua.registration is not None
    assert peer.ua.registration.state is RS.REGISTERED  # still bound while refreshing


def test_granted_expiry_from_expires_header_when_contact_has_none() -> None:
    peer = Peer()
    first = register_once(peer)
    peer.reply(first, 200, headers=[("Expires", "300")])
    assert peer.ua.registration is not None
    assert peer.ua.registration.expires_at == pytest.approx(300)


def test_refresh_delay_is_well_before_expiry() -> None:
    assert refresh_delay(3600) == pytest.approx(2880)
    assert refresh_delay(120) == pytest.approx(88)
    assert refresh_delay(60) == pytest.approx(30)
    for granted in (30, 60, 61, 600, 86400):
        assert granted / 2 <= refresh_delay(granted) < granted


def test_wrong_password_fails_after_two_registers_no_flood() -> None:
    peer = Peer()
    first = register_once(peer)
    peer.reply(first, 401, headers=[("WWW-Authenticate", CHALLENGE)])
    second = peer.take_one("REGISTER")
    assert isinstance(second, Request)
    peer.reply(second, 401, headers=[("WWW-Authenticate", CHALLENGE.replace("n0nce-1", "n2"))])
    assert peer.take() == []  # no third REGISTER
    status = peer.ua.registration
    assert status is not None
    assert status.state is RS.FAILING and status.fatal
    assert "credentials refused" in status.last_reason
    assert status.retry_at is not None and status.retry_at - peer.now >= 24
    assert len(peer.requests("REGISTER")) == 2


def test_stale_nonce_gets_one_more_try() -> None:
    peer = Peer()
    first = register_once(peer)
    peer.reply(first, 401, headers=[("WWW-Authenticate", CHALLENGE)])
    second = peer.take_one("REGISTER")
    assert isinstance(second, Request)
    peer.reply(second, 401, headers=[("WWW-Authenticate", CHALLENGE + ", stale=true")])
    third = peer.take_one("REGISTER")
    assert isinstance(third, Request)
    assert "Authorization" in third.headers
    peer.reply(third, 200)
    assert peer.ua.registration is not None
    assert peer.ua.registration.state is RS.REGISTERED


def test_423_retries_with_min_expires() -> None:
    peer = Peer(ua_config(register_expires=60))
    first = register_once(peer)
    peer.reply(first, 423, headers=[("Min-Expires", "1200")])
    retry = peer.take_one("REGISTER")
    assert isinstance(retry, Request)
    assert retry.headers.get("Expires") == "1200"
    assert retry.contacts[0].expires == 1200


def test_server_error_backs_off_honouring_retry_after() -> None:
    peer = Peer()
    first = register_once(peer)
    peer.reply(first, 503, headers=[("Retry-After", "600")])
    status = peer.ua.registration
    assert status is not None and status.state is RS.FAILING and not status.fatal
    assert status.retry_at == pytest.approx(600)
    peer.advance(599)
    assert peer.take() == []
    peer.advance(2)
    assert isinstance(peer.take_one("REGISTER"), Request)


def test_backoff_doubles_to_a_cap() -> None:
    peer = Peer()
    register_once(peer)
    gaps = []
    for _ in range(9):
        sent_at = peer.now
        peer.advance(40)  # Timer F (32 s) ends the attempt
        status = peer.ua.registration
        assert status is not None and status.retry_at is not None
        gaps.append(status.retry_at - sent_at - 32)
        peer.advance(status.retry_at - peer.now)
        peer.take()
    assert 24 <= gaps[0] <= 36
    assert gaps[1] > gaps[0]
    assert max(gaps) <= 1800 * 1.2 + 1


def test_no_answer_means_failing_after_timer_f_with_retransmissions() -> None:
    peer = Peer()
    register_once(peer)
    peer.advance(31)
    assert len(peer.take()) >= 5  # Timer E retransmissions over UDP
    peer.advance(2)
    status = peer.ua.registration
    assert status is not None and status.state is RS.FAILING
    assert status.last_status == 408


def test_binding_that_expires_unrefreshed_is_not_registered() -> None:
    peer = Peer()
    authenticate(peer, register_once(peer), expires="60")
    peer.advance(61)  # the refresh at 30 s times out at 62 s: the binding is gone first
    status = peer.ua.registration
    assert status is not None and status.state is not RS.REGISTERED


def test_unregister_sends_expires_zero() -> None:
    peer = Peer()
    authenticate(peer, register_once(peer))
    peer.ua.unregister(peer.now)
    bye = peer.take_one("REGISTER")
    assert isinstance(bye, Request)
    assert bye.headers.get("Expires") == "0"
    assert bye.contacts[0].expires == 0
    peer.reply(bye, 401, headers=[("WWW-Authenticate", CHALLENGE)])
    again = peer.take_one("REGISTER")
    assert isinstance(again, Request)
    peer.reply(again, 200)
    assert peer.ua.registration is not None
    assert peer.ua.registration.state is RS.UNREGISTERED


def test_outbound_proxy_gets_a_route_and_the_packets() -> None:
    proxy = SipUri(host="192.0.2.99", port=5080)
    peer = Peer(ua_config(outbound_proxy=proxy, domain="example.org",
                          registrar=SipUri(host="example.org")))  # fmt: skip
    first = register_once(peer)
    assert str(first.uri) == "sip:example.org"
    assert sip(first.route[0].uri).host == "192.0.2.99"
    assert sip(first.route[0].uri).has_param("lr")
    assert peer.destination_of(first) == ("192.0.2.99", 5080)
    assert sip(first.to.uri).host == "example.org"


def test_tcp_connection_loss_registers_again() -> None:
    peer = Peer(ua_config(transport="tcp"))
    authenticate(peer, register_once(peer))
    peer.ua.transport_failed(PROXY, peer.now)
    again = peer.take_one("REGISTER")
    assert isinstance(again, Request)
    assert again.via.transport == "TCP"
    assert sip(again.contacts[0].uri).get_param("transport") == "tcp"


def test_without_registrar_nothing_registers() -> None:
    peer = Peer(ua_config(registrar=None))
    peer.ua.register(0.0)
    assert peer.take() == []
    assert peer.ua.registration is None


def test_state_changes_are_events() -> None:
    peer = Peer()
    authenticate(peer, register_once(peer))
    states = [e.status.state for e in peer.events if isinstance(e, RegistrationChanged)]
    assert states == [RS.REGISTERING, RS.REGISTERED]
