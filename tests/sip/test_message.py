from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import (
    CSeq,
    Headers,
    LocalProtocolError,
    NameAddr,
    Reason,
    RemoteProtocolError,
    Request,
    Response,
    SipUri,
    Via,
    parse_message,
    response_to,
)
from voipalert.sip.grammar import TOKEN_CHARS

GOLDEN = Path(__file__).parent.parent / "data" / "sip"


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.sip").read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "invite_offer",
        "asterisk_401_register",
        "freeswitch_407_invite_compact",
        "kamailio_200_register",
        "asterisk_200_invite",
        "bye_from_pbx",
    ],
)
def test_golden_message_round_trips_byte_for_byte(name: str) -> None:
    data = golden(name)
    assert parse_message(data).serialize() == data


def test_golden_invite_fields() -> None:
    m = parse_message(golden("invite_offer"))
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == SipUri(user="1001", host="pbx.example.com")
    assert m.via == Via(
        host="192.0.2.10",
        port=5060,
        params=(("branch", "z9hG4bK7a3f9c21e4b8d610"), ("rport", None)),
    )
    assert m.via.has_rport and m.via.rport is None
    assert m.via.has_rfc3261_branch
    assert m.max_forwards == 70
    assert m.from_ == NameAddr(
        SipUri(user="alerts", host="pbx.example.com"), "voipalert", (("tag", "5c1e9a7f"),)
    )
    assert m.to.tag is None
    assert m.call_id == "3f2b8c4d9e1a6b7c5d4e3f2a1b0c9d8e"
    assert m.cseq == CSeq(1, "INVITE")
    (contact,) = m.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.transport == "udp"
    assert m.allow == ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS")
    assert m.content_type == "application/sdp"
    assert m.content_length == len(m.body) == 234


def test_golden_200_with_record_route_and_timer() -> None:
    m = parse_message(golden("asterisk_200_invite"))
    assert isinstance(m, Response)
    assert (m.status, m.reason, m.is_success, m.is_provisional) == (200, "OK", True, False)
    assert m.via.received == "192.0.2.10" and m.via.rport == 5060
    assert [str(r.uri) for r in m.record_route] == [
        "sip:198.51.100.7;lr",
        "sip:203.0.113.9;lr;transport=udp",
    ]
    assert m.to.tag == "9d2a6f0e-1b3c-4d5e-8f70-a1b2c3d4e5f6"
    assert m.require == ("timer",)
    assert "100rel" in m.supported
    assert m.headers.get("x") == "1800;refresher=uas"  # compact form of Session-Expires


def test_golden_register_200_contact_expires() -> None:
    m = parse_message(golden("kamailio_200_register"))
    assert [c.expires for c in m.contacts] == [600, 12]
    assert m.expires is None


def test_golden_bye_reason() -> None:
    m = parse_message(golden("bye_from_pbx"))
    assert m.reasons == (Reason("Q.850", 16, "Normal Clearing"),)
    assert m.cseq == CSeq(12345, "BYE")


def test_pyvoip_compact_headers_freeswitch() -> None:
    """pyVoIP ✗ (docs/sip.md §4.1 row 2): FreeSWITCH enable-compact-headers."""
    m = parse_message(golden("freeswitch_407_invite_compact"))
    assert isinstance(m, Response)
    assert m.status == 407
    assert m.via.branch == "z9hG4bKc0ffee0ddba11"
    assert m.from_.tag == "a1b2c3d4"
    assert m.to.tag == "Hy7Q9c3Nm0vXa"
    assert m.call_id == "7d6c5b4a39281706f5e4d3c2b1a09f8e"
    assert m.content_length == 0
    assert m.supported == ("timer", "path", "replaces")
    assert m.headers.values("Allow-Events") == ("talk", "hold", "conference", "refer")
    assert m.headers.get("Proxy-Authenticate") is not None


def test_response_to_copies_the_dialog_headers_and_adds_a_tag() -> None:
    request = parse_message(golden("bye_from_pbx"))
    assert isinstance(request, Request)
    reply = response_to(request, 200, headers=[("Allow", "INVITE, ACK")], to_tag="unused")
    assert (reply.status, reply.reason) == (200, "OK")
    assert reply.headers.get("Via") == request.headers.get("Via")
    assert reply.from_ == request.from_
    assert reply.to == request.to  # already tagged: left alone
    assert (reply.call_id, reply.cseq) == (request.call_id, request.cseq)
    assert reply.headers.get("Reason") is None
    assert reply.allow == ("INVITE", "ACK")
    assert parse_message(reply.serialize()) == reply.with_header("Content-Length", "0")


def test_response_to_tags_an_untagged_to_except_on_100() -> None:
    request = parse_message(golden("invite_offer"))
    assert isinstance(request, Request)
    assert response_to(request, 180, to_tag="t1").to.tag == "t1"
    assert response_to(request, 100, to_tag="t1").to.tag is None
    assert response_to(request, 486).reason == "Busy Here"
    assert response_to(request, 499).reason == "Bad Request"  # the class's x00 phrase
    with pytest.raises(LocalProtocolError, match="not 100-699"):
        response_to(request, 700)


def test_response_to_copies_every_via_line_in_order() -> None:
    data = golden("invite_offer").replace(
        b"Max-Forwards: 70", b"Via: SIP/2.0/UDP a.example.com, SIP/2.0/TCP b.example.com"
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    reply = response_to(request, 404)
    assert [v.host for v in reply.vias] == ["192.0.2.10", "a.example.com", "b.example.com"]


def test_build_checks_everything_at_once() -> None:
    uri = SipUri(user="1001", host="pbx.example.com")
    request = Request.build(
        "OPTIONS",
        uri,
        headers=[
            ("Via", Via(host="192.0.2.10", params=(("branch", "z9hG4bKabc"),))),
            ("From", NameAddr(SipUri(user="a", host="b"), params=(("tag", "1"),))),
            ("To", NameAddr(uri)),
            ("Call-ID", "x@y"),
            ("CSeq", CSeq(7, "OPTIONS")),
        ],
    )
    wire = request.serialize()
    assert wire.startswith(b"OPTIONS sip:1001@pbx.example.com SIP/2.0\r\n")
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    assert parse_message(wire).cseq == CSeq(7, "OPTIONS")
    with pytest.raises(LocalProtocolError, match="method"):
        Request.build("IN VITE", uri)


def test_serialize_always_writes_the_real_content_length() -> None:
    m = parse_message(golden("invite_offer"))
    assert isinstance(m, Request)
    shorter = m.with_body(b"v=0\r\n", "application/sdp")
    assert parse_message(shorter.serialize()).content_length == 5
    no_length = m.without_header("Content-Length").with_body(b"")
    assert no_length.serialize().endswith(b"Content-Length: 0\r\n\r\n")


def test_top_via_helpers() -> None:
    data = golden("invite_offer").replace(
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK7a3f9c21e4b8d610;rport",
        b"v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa;rport, SIP/2.0/TCP b.example.com",
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    stamped = request.with_top_via_param("received", "203.0.113.5").with_top_via_param(
        "rport", "4000"
    )
    assert stamped.via.received == "203.0.113.5" and stamped.via.rport == 4000
    assert [v.host for v in stamped.vias] == ["192.0.2.10", "b.example.com"]
    new_top = Via(host="192.0.2.11", transport="TCP", params=(("branch", "z9hG4bKb"),))
    pushed = request.with_prepended_header("Via", new_top)
    assert [v.host for v in pushed.vias] == ["192.0.2.11", "192.0.2.10", "b.example.com"]
    with pytest.raises(LocalProtocolError, match="no Via"):
        request.without_header("Via").with_top_via(new_top)


@pytest.mark.parametrize(
    "header",
    ["Subject", "X-Alert", "P-Asserted-Identity"],
)
@pytest.mark.parametrize("bad", ["\r\nVia: SIP/2.0/UDP evil", "a\nb", "nul\x00", "bel\x07"])
def test_injection_through_a_header_value_is_refused(header: str, bad: str) -> None:
    uri = SipUri(user="1001", host="pbx.example.com")
    with pytest.raises(LocalProtocolError, match="control character"):
        Request.build("MESSAGE", uri, headers=[(header, f"Disk full {bad}")])
    built = Request("MESSAGE", uri, Headers([(header, f"Disk full {bad}")]))
    with pytest.raises(LocalProtocolError, match="control character"):
        built.serialize()


@pytest.mark.parametrize("bad", ["Bob\r\nVia: x", "Bob\n", "Bob\x00"])
def test_injection_through_a_display_name_is_refused(bad: str) -> None:
    address = NameAddr(SipUri(user="bob", host="example.com"), bad)
    with pytest.raises(LocalProtocolError, match="display name"):
        address.format()
    with pytest.raises(LocalProtocolError, match="display name"):
        Request.build("INVITE", SipUri(host="example.com"), headers=[("To", address)])


@pytest.mark.parametrize("bad", ["bob\r\nVia: x", "bob\n", "b\x00b"])
def test_injection_through_a_uri_user_is_refused(bad: str) -> None:
    uri = SipUri(user=bad, host="example.com")
    with pytest.raises(LocalProtocolError, match="URI user"):
        uri.format()
    with pytest.raises(LocalProtocolError, match="URI user"):
        Request("INVITE", uri).serialize()


def test_header_names_must_be_tokens() -> None:
    with pytest.raises(LocalProtocolError, match="header name"):
        Request.build("OPTIONS", SipUri(host="h"), headers=[("X-Evil: a\r\nB", "c")])


def test_reason_phrase_and_start_line_are_checked() -> None:
    with pytest.raises(LocalProtocolError, match="reason phrase"):
        Response.build(486, "Busy\r\nVia: x")
    with pytest.raises(LocalProtocolError, match="start line"):
        Response(486, "Busy\r\nX: y").serialize()


def test_accessors_report_malformed_values_as_remote_errors() -> None:
    m = parse_message(golden("bye_from_pbx"))
    assert isinstance(m, Request)
    bad = m.with_header("Expires", "soon").with_header("Min-Expires", "-1")
    with pytest.raises(RemoteProtocolError, match="Expires"):
        _ = bad.expires
    with pytest.raises(RemoteProtocolError, match="Min-Expires"):
        _ = bad.min_expires
    with pytest.raises(RemoteProtocolError, match="Allow"):
        _ = m.with_header("Allow", "INVITE;x").allow
    with pytest.raises(RemoteProtocolError, match="Call-ID"):
        _ = m.with_header("Call-ID", "a b").call_id
    with pytest.raises(RemoteProtocolError, match="missing Via"):
        _ = m.without_header("Via").via
    with pytest.raises(RemoteProtocolError, match="mixed"):
        _ = m.with_header("Contact", "*, <sip:a@b>").contacts
    star = m.with_header("Contact", "*")
    assert star.is_wildcard_contact and star.contacts == ()
    assert m.with_header("Retry-After", "120 (lunch);duration=60").retry_after == 120
    assert m.with_header("Min-Expires", "60").min_expires == 60


# ---------------------------------------------------------------- property tests

_tokens = st.text(alphabet=sorted(TOKEN_CHARS), min_size=1, max_size=12)
_safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    max_size=30,
).map(lambda s: s.strip(" \t\x85\xa0"))
_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True)
_uris = st.builds(
    SipUri,
    user=st.none() | st.from_regex(r"[A-Za-z0-9+._-]{1,12}", fullmatch=True),
    host=_hosts,
    port=st.none() | st.integers(1, 65535),
)


@settings(max_examples=150, deadline=None)
@given(
    method=_tokens,
    uri=_uris,
    display=st.none() | _safe_text,
    tag=_tokens,
    seq=st.integers(0, 2**31 - 1),
    extra=st.lists(st.tuples(_tokens.map(lambda t: f"X-{t}"), _safe_text), max_size=4),
    body=st.binary(max_size=64),
)
def test_generated_requests_round_trip(
    method: str,
    uri: SipUri,
    display: str | None,
    tag: str,
    seq: int,
    extra: list[tuple[str, str]],
    body: bytes,
) -> None:
    request = Request.build(
        method,
        uri,
        headers=[
            ("Via", Via(host="192.0.2.1", params=(("branch", "z9hG4bK" + tag),))),
            ("From", NameAddr(uri, display, (("tag", tag),))),
            ("To", NameAddr(uri)),
            ("Call-ID", f"{tag}@host"),
            ("CSeq", CSeq(seq, method)),
            *extra,
            ("Content-Length", "0"),
        ],
        body=body,
    )
    wire = request.serialize()
    parsed = parse_message(wire)
    assert isinstance(parsed, Request)
    assert (parsed.method, parsed.uri, parsed.body) == (method, uri, body)
    assert parsed.from_.display_name == display
    assert parsed.from_.tag == tag
    assert parsed.cseq == CSeq(seq, method)
    assert [parsed.headers.get(name) for name, _ in extra] == [
        request.headers.get(name) for name, _ in extra
    ]
    assert parsed.serialize() == wire


@settings(max_examples=100, deadline=None)
@given(status=st.integers(100, 699), reason=_safe_text, body=st.binary(max_size=32))
def test_generated_responses_round_trip(status: int, reason: str, body: bytes) -> None:
    response = Response.build(
        status,
        reason,
        headers=[
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"),
            ("From", "<sip:a@b>;tag=1"),
            ("To", "<sip:c@d>"),
            ("Call-ID", "x"),
            ("CSeq", "1 INVITE"),
        ],
        body=body,
    )
    parsed = parse_message(response.serialize())
    assert isinstance(parsed, Response)
    assert (parsed.status, parsed.reason.strip(), parsed.body) == (status, reason.strip(), body)
