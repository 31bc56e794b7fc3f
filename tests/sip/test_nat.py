"""NAT traversal rules (sip/nat.py, docs/sip.md §4.8): RFC 3581 rport/received fix our
Contact and the registration follows; keep-alives hold the binding between calls."""

from __future__ import annotations

from tests.sip.peer import CHALLENGE, OUR_HOST, OUR_PORT, PROXY, Peer, sip, ua_config
from tests.sip.test_call import start_call
from voipalert.sip.events import RegistrationState
from voipalert.sip.fields import Via
from voipalert.sip.message import Request
from voipalert.sip.nat import PING, KeepAliveSchedule, mapped_address

PUBLIC = ("198.51.100.7", 40000)


def natted(request: Request, public: tuple[str, int] = PUBLIC) -> Request:
    """The request as the registrar saw it: RFC 3581 §4 received and rport filled in."""
    return request.with_top_via_param("received", public[0]).with_top_via_param(
        "rport", str(public[1])
    )


def registered(peer: Peer, public: tuple[str, int] | None = None) -> Request:
    peer.ua.register(peer.now)
    first = peer.take_one("REGISTER")
    assert isinstance(first, Request)
    peer.reply(first if public is None else natted(first, public), 401,
               headers=[("WWW-Authenticate", CHALLENGE)])  # fmt: skip
    second = peer.take_one("REGISTER")
    assert isinstance(second, Request)
    peer.reply(second if public is None else natted(second, public), 200,
               headers=[("Expires", "600")])  # fmt: skip
    return second


def contact_of(request: Request) -> tuple[str, int | None]:
    uri = sip(request.contacts[0].uri)
    return uri.host, uri.port


def test_mapped_address_reads_received_and_rport() -> None:
    assert mapped_address(Via.parse("SIP/2.0/UDP 10.0.0.2:5062;rport=4000;received=1.2.3.4")) == (
        "1.2.3.4",
        4000,
    )
    # No received: the server saw the sent-by host (it adds received only when they differ).
    assert mapped_address(Via.parse("SIP/2.0/UDP 10.0.0.2:5062;rport=4000")) == ("10.0.0.2", 4000)
    # A bare rport: the server ignored RFC 3581, the Via tells nothing.
    assert mapped_address(Via.parse("SIP/2.0/UDP 10.0.0.2:5062;rport")) is None


def test_a_differing_rport_fixes_the_contact_and_registers_again() -> None:
    peer = Peer()
    peer.ua.register(peer.now)
    first = peer.take_one("REGISTER")
    assert isinstance(first, Request)
    peer.reply(first, 401, headers=[("WWW-Authenticate", CHALLENGE)])
    second = peer.take_one("REGISTER")
    assert isinstance(second, Request) and contact_of(second) == (OUR_HOST, OUR_PORT)
    peer.reply(natted(second), 200, headers=[("Expires", "600")])
    # At once: the new Contact, and the old one removed in the same REGISTER.
    third = peer.take_one("REGISTER")
    assert isinstance(third, Request)
    assert contact_of(third) == PUBLIC
    assert [(sip(c.uri).host, sip(c.uri).port, c.expires) for c in third.contacts] == [
        (PUBLIC[0], PUBLIC[1], 600),
        (OUR_HOST, OUR_PORT, 0),
    ]
    assert third.call_id == second.call_id and third.cseq.seq == second.cseq.seq + 1
    assert third.via.sent_by == f"{OUR_HOST}:{OUR_PORT}"  # Via keeps the local address
    assert peer.ua.stats["contact_rewritten"] == 1
    peer.reply(natted(third), 200, headers=[("Expires", "600")])
    assert peer.take() == []  # nothing moved this time: no loop
    status = peer.ua.registration
    assert status is not None and status.state is RegistrationState.REGISTERED
    # Calls carry the public Contact too; responses still match our local Via.
    _, invite = start_call(peer)
    assert contact_of(invite) == PUBLIC
    assert invite.via.sent_by == f"{OUR_HOST}:{OUR_PORT}"


def test_mapping_seen_on_the_challenge_needs_no_second_register() -> None:
    peer = Peer()
    second = registered(peer, PUBLIC)
    assert contact_of(second) == PUBLIC  # the authenticated retry already carried it
    assert [c.expires for c in second.contacts] == [600]
    assert peer.take() == []


def test_same_address_changes_nothing() -> None:
    peer = Peer()
    registered(peer, (OUR_HOST, OUR_PORT))
    assert peer.take() == []
    assert peer.ua.stats["contact_rewritten"] == 0


def test_tcp_keeps_the_listening_contact() -> None:
    peer = Peer(ua_config(transport="tcp"))
    registered(peer, PUBLIC)
    assert peer.take() == []
    assert peer.ua.stats["contact_rewritten"] == 0


def test_only_registrar_transactions_move_the_contact() -> None:
    peer = Peer()
    registered(peer)
    _, invite = start_call(peer)
    peer.reply(natted(invite), 486)
    assert [m for m in peer.take() if isinstance(m, Request) and m.method == "REGISTER"] == []
    assert peer.ua.stats["contact_rewritten"] == 0


def test_udp_keepalive_is_an_options_to_the_registrar() -> None:
    peer = Peer(ua_config(keepalive_seconds=25.0))
    registered(peer)
    peer.advance(24.9)
    assert peer.take() == []
    peer.advance(0.2)
    options = peer.take_one("OPTIONS")
    assert isinstance(options, Request)
    assert str(options.uri) == "sip:192.0.2.10" and peer.destination_of(options) == PROXY
    assert options.via.has_rport
    peer.reply(options, 200, to_tag="pbx")
    peer.advance(25)
    again = peer.take_one("OPTIONS")
    assert isinstance(again, Request) and again.call_id != options.call_id
    # The NAT rebound meanwhile: the keep-alive's answer shows it; register at once.
    peer.reply(natted(again), 200, to_tag="pbx")
    register = peer.take_one("REGISTER")
    assert isinstance(register, Request) and contact_of(register) == PUBLIC
    assert peer.ua.stats["keepalive_options"] == 2


def test_unanswered_keepalive_registers_again() -> None:
    peer = Peer(ua_config(keepalive_seconds=25.0))
    registered(peer)
    peer.advance(25.1)
    peer.take_one("OPTIONS")
    peer.advance(32)  # Timer F
    sent = peer.take()
    assert [m for m in sent if isinstance(m, Request) and m.method == "REGISTER"]
    assert peer.ua.stats["keepalive_failed"] == 1


def test_no_keepalive_when_off_or_not_registered() -> None:
    peer = Peer()  # keepalive_seconds = 0
    registered(peer)
    peer.advance(200)
    assert not [m for m in peer.take() if isinstance(m, Request) and m.method == "OPTIONS"]
    unregistered = Peer(ua_config(keepalive_seconds=10.0))
    unregistered.ua.register(0.0)
    first = unregistered.take_one("REGISTER")
    assert isinstance(first, Request)
    unregistered.reply(first, 403)
    unregistered.advance(25)
    assert not [m for m in unregistered.take() if isinstance(m, Request) and m.method == "OPTIONS"]


def _raw(peer: Peer) -> list[bytes]:
    return [o.data for o in peer.ua.messages_to_send()]


def test_tcp_keepalive_is_a_crlf_ping_and_a_missing_pong_re_registers() -> None:
    peer = Peer(ua_config(transport="tcp", keepalive_seconds=30.0))
    registered(peer)
    peer.now = 30.0
    peer.ua.handle_timer(peer.now)
    out = peer.ua.messages_to_send()
    assert [(o.data, o.destination, o.transport) for o in out] == [(PING, PROXY, "tcp")]
    peer.ua.pong_received(PROXY, 30.05)
    assert peer.ua.stats["keepalive_pong"] == 1
    peer.now = 60.0
    peer.ua.handle_timer(peer.now)
    assert _raw(peer) == [PING]
    peer.ua.pong_received(("192.0.2.99", 5060), 60.1)  # not where we pinged
    peer.now = 70.0
    peer.ua.handle_timer(peer.now)  # RFC 5626 §4.4.1: no pong in 10 s
    register = peer.take_one("REGISTER")
    assert isinstance(register, Request)
    assert peer.ua.stats["keepalive_no_pong"] == 1


def test_keepalive_schedule() -> None:
    schedule = KeepAliveSchedule(10.0)
    assert schedule.next_deadline() is None
    schedule.start(0.0)
    assert not schedule.due(9.9) and schedule.due(10.0) and schedule.next_deadline() == 20.0
    schedule.pinged_at(PROXY, 10.0)
    assert schedule.next_deadline() == 20.0 and schedule.pong_due == 20.0
    assert schedule.pong_overdue(19.0) is None and schedule.pong_overdue(20.0) == PROXY
    assert schedule.pong_overdue(30.0) is None  # reported once
    schedule.stop()
    assert schedule.next_deadline() is None


def test_a_nat_that_moves_every_packet_does_not_make_a_register_storm() -> None:
    peer = Peer(ua_config(keepalive_seconds=1.0))
    registered(peer, PUBLIC)
    for n in range(1, 20):
        peer.advance(1.0)
        for message in peer.take():
            if isinstance(message, Request):
                peer.reply(natted(message, ("198.51.100.7", 40000 + n)), 200, to_tag="pbx",
                           headers=[("Expires", "600")])  # fmt: skip
    registers = {r.cseq.seq for r in peer.requests("REGISTER")}  # retransmissions once
    assert len(registers) <= 2 + 4  # the first two, then at most one move per 5 s
    assert peer.ua.stats["contact_rewrite_deferred"] > 0
