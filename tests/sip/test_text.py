"""SIP MESSAGE (RFC 3428) in the sans-IO agent: a text out with digest auth and a size
bound, and which texts in are accepted (abuse: strangers, forged From, bodies)."""

from __future__ import annotations

import pytest

from tests.sip.peer import CHALLENGE, PROXY, Peer, ua_config
from tests.sip.test_agent import answer, request
from voipalert.sip.events import TextDone, TextReceived
from voipalert.sip.message import Request
from voipalert.sip.text import UDP_REQUEST_LIMIT_BYTES, fit_body, sender_key
from voipalert.sip.uri import SipUri

CAROL = SipUri(user="203", host="192.0.2.10")
CAROL_FROM = "<sip:203@192.0.2.10:5060>;tag=carol1"


def sent_message(peer: Peer) -> Request:
    message = peer.take_one("MESSAGE")
    assert isinstance(message, Request)
    return message


def test_a_text_goes_out_and_its_200_is_reported() -> None:
    peer = Peer()
    text_id = peer.ua.send_text(CAROL, "voipalert alert #7. Reply 1 to acknowledge.", peer.now)
    message = sent_message(peer)
    assert message.uri == CAROL and message.to.uri == CAROL
    assert message.content_type == "text/plain"
    assert message.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert message.body == b"voipalert alert #7. Reply 1 to acknowledge."
    assert message.contacts == ()  # §4: a MESSAGE carries no Contact
    peer.reply(message, 200)
    assert peer.last(TextDone) == TextDone(text_id, 200, "OK")


@pytest.mark.parametrize("status", [401, 407])
def test_a_challenge_is_answered_once_with_a_new_branch(status: int) -> None:
    peer = Peer()
    text_id = peer.ua.send_text(CAROL, "hello", peer.now)
    first = sent_message(peer)
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    peer.reply(first, status, headers=[(header, CHALLENGE)])
    retry = sent_message(peer)
    credentials = "Authorization" if status == 401 else "Proxy-Authorization"
    assert 'username="voipalert"' in (retry.headers.get(credentials) or "")
    assert retry.via.branch != first.via.branch
    assert (retry.call_id, retry.from_.tag) == (first.call_id, first.from_.tag)
    assert retry.cseq.seq == first.cseq.seq + 1
    peer.reply(retry, status, headers=[(header, CHALLENGE.replace("n0nce-1", "other"))])
    assert peer.last(TextDone) == TextDone(text_id, status, "credentials refused for MESSAGE")
    assert len(peer.take()) == 0


def test_no_answer_ends_in_408_after_timer_f() -> None:
    peer = Peer()
    text_id = peer.ua.send_text(CAROL, "hello", peer.now)
    peer.advance(40)
    assert peer.last(TextDone) == TextDone(text_id, 408, "timeout")


def test_an_oversized_text_is_cut_to_fit_1300_bytes_over_udp_even_with_auth() -> None:
    peer = Peer()
    peer.ua.send_text(CAROL, "Reply 1 to acknowledge.\n" + "é" * 3000, peer.now)
    first = sent_message(peer)
    assert first.body.startswith(b"Reply 1 to acknowledge.\n")
    assert first.body.decode("utf-8").endswith("…")  # cut on a character boundary
    peer.reply(first, 407, headers=[("Proxy-Authenticate", CHALLENGE)])
    retry = sent_message(peer)
    assert len(retry.serialize()) < UDP_REQUEST_LIMIT_BYTES
    assert retry.body == first.body


def test_fit_body_keeps_short_texts_and_cuts_on_characters() -> None:
    assert fit_body("short", 100) == b"short"
    cut = fit_body("ab€€€", 8)
    assert len(cut) <= 8 and cut.decode("utf-8").endswith("…")


def test_a_reply_from_the_texted_contact_is_accepted() -> None:
    peer = Peer()
    peer.ua.expect_texts_from(CAROL, until=peer.now + 3600)
    reply = request("MESSAGE", from_=CAROL_FROM, extra=[("Content-Type", "text/plain")], body=b"1")
    assert answer(peer, reply).status == 200
    received = peer.last(TextReceived)
    assert isinstance(received, TextReceived)
    assert (received.body, sender_key(received.sender)) == ("1", "203@192.0.2.10")


@pytest.mark.parametrize(
    ("from_", "content_type", "body", "status"),
    [
        ("<sip:mallory@192.0.2.66>;tag=x", "text/plain", b"1", 403),  # a stranger
        ("<sip:204@192.0.2.10>;tag=x", "text/plain", b"1", 403),  # a colleague never texted
        (CAROL_FROM, "application/im-iscomposing+xml", b"<x/>", 415),
        (CAROL_FROM, "text/plain", b"1" * 1001, 413),
    ],
)
def test_unwanted_texts_are_refused_without_an_event(
    from_: str, content_type: str, body: bytes, status: int
) -> None:
    peer = Peer()
    peer.ua.expect_texts_from(CAROL, until=peer.now + 3600)
    reply = request("MESSAGE", from_=from_, extra=[("Content-Type", content_type)], body=body)
    assert answer(peer, reply).status == status
    assert not [e for e in peer.events if isinstance(e, TextReceived)]
    assert peer.ua.stats[f"text_{status}"] == 1


def test_a_reply_after_the_window_is_refused() -> None:
    peer = Peer()
    peer.ua.expect_texts_from(CAROL, until=peer.now + 60)
    peer.advance(61)
    reply = request("MESSAGE", from_=CAROL_FROM, body=b"1")
    assert answer(peer, reply).status == 403


def test_a_forged_from_from_outside_the_trusted_hosts_gets_no_answer() -> None:
    # The From header is only as good as the PBX's checks (Kamailio refuses a From that is
    # not the authenticated user): with trusted_hosts, only the PBX can deliver a text.
    peer = Peer(ua_config(trusted_hosts=frozenset({PROXY[0]})))
    peer.ua.expect_texts_from(CAROL, until=peer.now + 3600)
    forged = request("MESSAGE", from_=CAROL_FROM, body=b"1")
    peer.deliver(forged, ("198.51.100.9", 5060))
    assert peer.take() == []
    assert not [e for e in peer.events if isinstance(e, TextReceived)]
    assert peer.ua.stats["untrusted"] == 1


def test_a_flood_of_texts_is_rate_limited() -> None:
    peer = Peer(ua_config(unsolicited_per_second=1.0))
    for i in range(20):
        peer.deliver(
            request("MESSAGE", branch=f"z9hG4bKflood{i}", body=b"spam"), ("198.51.100.9", 5060)
        )
    answered = [m for m in peer.take() if not isinstance(m, Request)]
    assert 0 < len(answered) <= 5  # the burst; the rest are dropped
    assert peer.ua.stats["rate_limited"] == 20 - len(answered)
