"""The agent and RFC 3263: requests to a host name wait for DNS, go to the first address,
and move to the next one on a timeout, a transport error or a 503 (§4.3) with a new
branch; nothing ever leaves for a name. Pure: DNS answers are handed in by the test."""

from __future__ import annotations

import ipaddress
import random

from tests.sip.peer import SDP_ANSWER, Peer, ua_config
from tests.sip.test_call import ended
from voipalert.sip.events import CallEnded, CallId, CallOutcome, RegistrationState
from voipalert.sip.locate import Hop
from voipalert.sip.message import Request, Response
from voipalert.sip.sdp import new_local_media
from voipalert.sip.uri import SipUri

REGISTRAR = SipUri(host="pbx.example.com")
HOP = Hop("pbx.example.com", None, "udp")
FIRST, SECOND = ("192.0.2.21", 5060), ("192.0.2.22", 5070)
TARGET = SipUri(user="1001", host="pbx.example.com")
OK_HEADERS = [("Contact", "<sip:voipalert@192.0.2.1:5062>;expires=600")]


def named_peer(**overrides: object) -> Peer:
    return Peer(ua_config(registrar=REGISTRAR, domain="pbx.example.com", **overrides))


def sent(peer: Peer) -> list[tuple[Request | Response, tuple[str, int]]]:
    before = len(peer.wire)
    peer.take()
    return peer.wire[before:]


def only_ips(peer: Peer) -> None:
    for _, (host, _) in peer.wire:
        ipaddress.ip_address(host)  # raises on a name


def register_resolved(peer: Peer) -> Request:
    peer.ua.register(peer.now)
    assert sent(peer) == []  # nothing leaves before DNS answers
    assert peer.ua.lookups_to_do() == [HOP]
    assert peer.ua.lookups_to_do() == []  # asked once
    peer.ua.resolved(HOP, [FIRST, SECOND], 300.0, peer.now)
    out = sent(peer)
    assert [dest for _, dest in out] == [FIRST]
    request = out[0][0]
    assert isinstance(request, Request) and request.method == "REGISTER"
    return request


def registration_state(peer: Peer) -> RegistrationState:
    status = peer.ua.registration
    assert status is not None
    return status.state


def test_register_waits_for_dns_then_goes_to_the_first_address() -> None:
    peer = named_peer()
    register = register_resolved(peer)
    peer.reply(register, 200, headers=OK_HEADERS)
    assert registration_state(peer) is RegistrationState.REGISTERED
    only_ips(peer)


def test_transport_error_fails_over_to_the_next_address_with_a_new_branch() -> None:
    peer = named_peer()
    first = register_resolved(peer)
    peer.ua.transport_failed(FIRST, peer.now)  # ICMP port unreachable from the first
    out = sent(peer)
    assert [dest for _, dest in out] == [SECOND]
    retry = out[0][0]
    assert isinstance(retry, Request) and retry.method == "REGISTER"
    assert retry.via.branch != first.via.branch
    assert retry.cseq == first.cseq and retry.call_id == first.call_id
    assert registration_state(peer) is RegistrationState.REGISTERING
    peer.reply(retry, 200, headers=OK_HEADERS)
    assert registration_state(peer) is RegistrationState.REGISTERED
    assert peer.ua.stats["dns_failover"] == 1
    # The next refresh goes straight to the address that worked.
    peer.advance(301.0)
    refresh = [dest for message, dest in sent(peer) if isinstance(message, Request)]
    assert refresh == [] or set(refresh) == {SECOND}


def test_timeout_fails_over_and_the_last_address_failing_fails_the_registration() -> None:
    peer = named_peer()
    register_resolved(peer)
    peer.advance(33.0)  # Timer F on the first address
    dests = [dest for _, dest in sent(peer)]  # retransmissions to the first, then the second
    assert SECOND in dests and set(dests[dests.index(SECOND) :]) == {SECOND}
    peer.ua.transport_failed(SECOND, peer.now)
    assert registration_state(peer) is RegistrationState.FAILING
    status = peer.ua.registration
    assert status is not None and status.last_status == 503


def test_503_fails_over() -> None:
    peer = named_peer()
    first = register_resolved(peer)
    peer.reply(first, 503)
    out = sent(peer)
    assert [dest for _, dest in out] == [SECOND]
    assert registration_state(peer) is RegistrationState.REGISTERING


def test_a_name_that_does_not_resolve_fails_like_a_transport_error() -> None:
    peer = named_peer()
    peer.ua.register(peer.now)
    assert peer.ua.lookups_to_do() == [HOP]
    peer.ua.resolved(HOP, [], 0.0, peer.now)
    assert sent(peer) == []
    assert registration_state(peer) is RegistrationState.FAILING
    status = peer.ua.registration
    assert status is not None and status.last_status == 503
    assert "DNS gave no address" in status.last_reason
    assert peer.ua.stats["dns_no_target"] == 1


def test_dns_answer_expires_with_its_ttl() -> None:
    peer = named_peer()
    peer.ua.register(peer.now)
    peer.ua.lookups_to_do()
    peer.ua.resolved(HOP, [FIRST], 10.0, peer.now)
    register = next(m for m, _ in sent(peer) if isinstance(m, Request))
    peer.reply(register, 200, headers=[("Contact", "<sip:voipalert@192.0.2.1:5062>;expires=60")])
    peer.advance(45.0)  # the refresh is due after the TTL ran out: ask DNS again
    assert peer.ua.lookups_to_do() == [HOP]


def test_responses_and_requests_from_resolved_addresses_count_as_the_registrar() -> None:
    peer = named_peer()
    register_resolved(peer)
    # The registrar's resolved addresses are peers: its OPTIONS are answered.
    assert "192.0.2.22" in peer.ua._admission.peer_hosts()
    assert "pbx.example.com" in peer.ua._admission.peer_hosts()


def invite_resolved(peer: Peer) -> tuple[CallId, Request]:
    media = new_local_media("192.0.2.1", 16384, rng=random.Random(1))
    call_id = peer.ua.invite(TARGET, media, peer.now, ring_timeout=30.0)
    assert sent(peer) == []
    assert peer.ua.lookups_to_do() == [HOP]
    peer.ua.resolved(HOP, [FIRST, SECOND], 300.0, peer.now)
    out = sent(peer)
    assert [dest for _, dest in out] == [FIRST]
    invite = out[0][0]
    assert isinstance(invite, Request) and invite.method == "INVITE"
    return call_id, invite


def test_invite_fails_over_on_503_and_is_answered_by_the_second() -> None:
    peer = Peer(ua_config(registrar=None))
    _, invite = invite_resolved(peer)
    peer.reply(invite, 503)
    out = sent(peer)
    assert [m.method for m, _ in out if isinstance(m, Request)] == ["ACK", "INVITE"]
    assert [dest for _, dest in out] == [FIRST, SECOND]  # ACK for the 503, then the retry
    retry = out[1][0]
    assert isinstance(retry, Request) and retry.via.branch != invite.via.branch
    peer.reply(retry, 180)
    peer.reply(
        retry, 200, body=SDP_ANSWER,
        headers=[("Contact", "<sip:1001@192.0.2.22:5070>"), ("Content-Type", "application/sdp")],
    )  # fmt: skip
    acks = [dest for m, dest in sent(peer) if isinstance(m, Request) and m.method == "ACK"]
    assert acks == [SECOND]
    only_ips(peer)


def test_invite_on_the_last_address_failing_ends_unreachable() -> None:
    peer = Peer(ua_config(registrar=None))
    invite_resolved(peer)
    peer.ua.transport_failed(FIRST, peer.now)
    sent(peer)
    peer.ua.transport_failed(SECOND, peer.now)
    peer.take()
    event = ended(peer)
    assert event.outcome is CallOutcome.UNREACHABLE and event.status == 503


def test_a_cancelled_call_does_not_fail_over() -> None:
    peer = Peer(ua_config(registrar=None))
    call_id, _ = invite_resolved(peer)
    peer.ua.hang_up(call_id, peer.now)  # before any 1xx: the CANCEL waits
    peer.ua.transport_failed(FIRST, peer.now)
    assert [dest for _, dest in sent(peer)] == []
    peer.take()
    assert isinstance(peer.last(CallEnded), CallEnded)


def test_numeric_hops_need_no_dns() -> None:
    peer = Peer()
    peer.ua.register(peer.now)
    assert peer.ua.lookups_to_do() == []
    assert [dest for _, dest in sent(peer)] == [("192.0.2.10", 5060)]


def test_cancel_follows_the_invite_after_failover() -> None:
    peer = Peer(ua_config(registrar=None))
    call_id, invite = invite_resolved(peer)
    peer.reply(invite, 503)
    retry = next(m for m, _ in sent(peer) if isinstance(m, Request) and m.method == "INVITE")
    peer.reply(retry, 180)
    sent(peer)
    peer.ua._clients.routes.clear()  # as if the DNS answer had expired meanwhile
    peer.ua.hang_up(call_id, peer.now)
    out = sent(peer)
    assert [(m.method, dest) for m, dest in out if isinstance(m, Request)] == [("CANCEL", SECOND)]
    assert peer.ua.lookups_to_do() == []
