"""The 49 torture messages of RFC 4475, each handled as its section says.

Where the RFC leaves the choice to the element ("reject it if you care about the field"),
the test states what our parser does and pins it down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voipalert.codec import Codec
from voipalert.sip import (
    AbsoluteUri,
    CSeq,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    SipUri,
    parse_message,
    response_to,
)
from voipalert.sip.digest import parse_credentials
from voipalert.sip.sdp import parse_answer

DATA = Path(__file__).parent.parent / "data" / "rfc4475"

VALID = {  # §3.1.1, §3.2, §3.3 (well-formed ones), §3.4, and §3.1.2.12 (see its test)
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason", "baddate", "badbranch",
    "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01", "bcast", "zeromf",
    "cparam01", "cparam02", "regescrt", "sdp01", "inv2543",
}  # fmt: skip
# name -> (section, fragment of the error message, status hint, partial message kept)
INVALID = {
    "badinv01": ("3.1.2.1", "Via: empty element", 400, True),
    "clerr": ("3.1.2.2", "Content-Length is 9999 but only", 400, True),
    "ncl": ("3.1.2.3", "Content-Length: '-999' is not a non-negative integer", 400, True),
    "scalar02": ("3.1.2.4", "CSeq: 36893488147419103232 is not below 2\\*\\*31", 400, True),
    "scalarlg": ("3.1.2.5", "CSeq: 9292394834772304023312 is not below", 400, True),
    "quotbal": ("3.1.2.6", "To: unterminated quoted string", 400, True),
    "ltgtruri": ("3.1.2.7", "Request-URI: '<sip:user@example.com>' is not a URI", 400, False),
    "lwsruri": ("3.1.2.8", "Request-Line must be", 400, False),
    "lwsstart": ("3.1.2.9", "Request-Line must be", 400, False),
    "trws": ("3.1.2.10", "Request-Line must be", 400, False),
    "escruri": ("3.1.2.11", "Request-URI must not contain headers", 400, True),
    "regbadct": ("3.1.2.13", "Contact: a URI with headers must be enclosed in <>", 400, True),
    "badaspec": ("3.1.2.14", "To: whitespace or nothing inside <>", 400, True),
    "baddn": ("3.1.2.15", "From: unquoted display name contains ','", 400, True),
    "badvers": ("3.1.2.16", "SIP version SIP/7.0 is not supported", 505, True),
    "mismatch01": ("3.1.2.17", "CSeq method INVITE does not match .* OPTIONS", 400, True),
    "mismatch02": ("3.1.2.18", "CSeq method INVITE does not match .* NEWMETHOD", 400, True),
    "bigcode": ("3.1.2.19", "status code '4294967301' is not 100-699", 400, False),
    "insuf": ("3.3.1", "missing required header\\(s\\): From, To, Call-ID", 400, True),
    "multi01": ("3.3.8", "appears 2 times", 400, True),
    "mcl01": ("3.3.9", "Content-Length appears 2 times", 400, True),
}


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def parse_request(name: str) -> Request:
    message = parse_message(load(name))
    assert isinstance(message, Request)
    return message


def test_the_corpus_is_complete_and_every_message_is_classified() -> None:
    names = {path.stem for path in DATA.glob("*.dat")} - {"test"}
    assert len(names) == 49
    assert VALID | set(INVALID) == names
    assert not VALID & set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_rejected_with_a_precise_error(name: str) -> None:
    _, fragment, status_hint, has_partial = INVALID[name]
    with pytest.raises(RemoteProtocolError, match=fragment) as info:
        parse_message(load(name))
    assert info.value.status_hint == status_hint
    assert (info.value.partial is not None) == has_partial


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_reparses_to_the_same_fields(name: str) -> None:
    message = parse_message(load(name))
    if name == "intmeth":
        # Its To display name holds BEL, NUL and DEL as quoted-pairs: valid to receive,
        # but our serializer refuses control characters in any header value.
        with pytest.raises(LocalProtocolError, match="control character"):
            message.serialize()
        return
    again = parse_message(message.serialize())
    assert again.body == message.body
    assert again.serialize() == message.serialize()
    if name != "inv2543":  # serialize() adds the Content-Length it lacked
        assert again == message


def test_invalid_requests_with_a_partial_message_can_be_answered() -> None:
    """insuf (§3.3.1): 'must respond with 400'; the partial request has Via and CSeq."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(load("insuf"))
    partial = info.value.partial
    assert isinstance(partial, Request)
    reply = response_to(partial, info.value.status_hint)
    assert reply.status == 400
    assert reply.via.branch == "z9hG4bKkdj.insuf"
    assert reply.cseq == CSeq(193942, "INVITE")


def test_3_1_1_1_wsinv_short_tortuous_invite() -> None:
    m = parse_request("wsinv")
    assert m.method == "INVITE"
    assert isinstance(m.uri, SipUri)
    assert (m.uri.user, m.uri.host, m.uri.params) == (
        "vivekg",
        "chair-dnrc.example.com",
        (("unknownparam", None),),
    )
    assert m.to.uri == SipUri(user="vivekg", host="chair-dnrc.example.com")
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.content_length == 150 == len(m.body)
    assert m.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (route,) = m.route
    assert isinstance(route.uri, SipUri)
    assert route.uri.has_param("lr")
    assert route.uri.get_param("unknownwith") == "value"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert m.content_type == "application/sdp"


def test_3_1_1_2_intmeth_wide_range_of_valid_characters() -> None:
    m = parse_request("intmeth")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method
    assert m.cseq == CSeq(139122385, method)
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.get_param("fromParam''~+*_!.-%") == "работающий"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_3_1_1_3_esc01_valid_percent_escapes() -> None:
    m = parse_request("esc01")
    assert isinstance(m.uri, SipUri)
    assert m.uri.unescaped_user == "sips:user@example.com"
    assert isinstance(m.to.uri, SipUri) and isinstance(m.from_.uri, SipUri)
    assert m.to.uri.unescaped_user == "user"
    assert m.from_.uri.unescaped_user == "I have spaces"
    (contact,) = m.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.unescaped_user == "caller"
    assert contact.uri.has_param("lr")  # written %6C%72
    # "value%41" is NOT "valueA": unescaping is never recursive.
    assert contact.uri.get_param("name") == "value%41"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"


def test_3_1_1_4_escnull_escaped_nulls_in_uris() -> None:
    m = parse_request("escnull")
    users = [c.uri.unescaped_user for c in m.contacts if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]
    assert isinstance(m.to.uri, SipUri)
    assert m.to.uri.unescaped_user == "null-\x00-null"
    assert b"\x00" not in m.serialize()  # the escapes stay escapes on the way out


def test_3_1_1_5_esc02_percent_that_is_not_an_escape() -> None:
    m = parse_request("esc02")
    assert m.method == "RE%47IST%45R"  # an unknown method, not REGISTER (→ 501 upstairs)
    assert m.to.display_name == "%Z%45"
    assert m.via.branch == "z9hG4bK209%fzsnel234"
    assert [str(c.uri) for c in m.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_3_1_1_6_lwsdisp_no_space_before_the_uri() -> None:
    m = parse_request("lwsdisp")
    assert m.from_.display_name == "caller"
    assert str(m.from_.uri) == "sip:caller@example.com"
    assert m.from_.tag == "323"


def test_3_1_1_7_longreq_long_values() -> None:
    m = parse_request("longreq")
    assert m.to.display_name is not None and "extremeextreme" in m.to.display_name
    assert isinstance(m.to.uri, SipUri) and m.to.uri.port == 6000
    assert m.to.uri.get_param("longparamname" + "name" * 24) == "shortvalue"
    assert m.from_.tag is not None and len(m.from_.tag) > 150
    assert len(m.vias) == 34
    assert m.vias[-1].received == "192.0.2.5"
    assert len(m.body) == 150


def test_3_1_1_8_dblreq_extra_trailing_octets_are_discarded() -> None:
    m = parse_request("dblreq")
    assert m.method == "REGISTER"
    assert m.body == b""
    assert b"INVITE" not in m.serialize()


def test_3_1_1_9_semiuri_semicolon_separated_user() -> None:
    m = parse_request("semiuri")
    assert isinstance(m.uri, SipUri)
    assert (m.uri.user, m.uri.host, m.uri.params) == ("user;par=u%40example.net", "example.com", ())
    assert m.headers.values("Accept") == (
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    )


def test_3_1_1_10_transports_unknown_transport_tokens() -> None:
    m = parse_request("transports")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_3_1_1_11_mpart01_multipart_binary_body() -> None:
    m = parse_request("mpart01")
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == 553 == m.content_length
    assert b"\x00" in m.body
    assert m.via.has_rport and m.via.rport is None


def test_3_1_1_12_unreason_utf8_reason_phrase() -> None:
    m = parse_message(load("unreason"))
    assert isinstance(m, Response)
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def test_3_1_1_13_noreason_empty_reason_phrase() -> None:
    m = parse_message(load("noreason"))
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (100, "")


def test_3_1_2_12_baddate_is_accepted_because_we_never_use_date() -> None:
    """The RFC: reject only if the Date matters to the element. We never read Date."""
    m = parse_request("baddate")
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_3_1_2_4_scalar02_each_overlarge_field_is_rejected_by_its_accessor() -> None:
    """Max-Forwards alone is also rejected at parse time; Expires values only when read."""
    text = load("scalar02").replace(b"36893488147419103232", b"1").replace(b"300", b"70")
    m = parse_request_bytes(text)
    with pytest.raises(RemoteProtocolError, match=r"Expires: 1000.* is larger than"):
        _ = m.expires
    with pytest.raises(RemoteProtocolError, match="Contact expires: 280297596632815"):
        _ = m.contacts[0].expires
    with pytest.raises(RemoteProtocolError, match="Max-Forwards: 300 is larger than 255"):
        parse_message(text.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"))


def test_3_1_2_5_scalarlg_overlarge_retry_after_and_warning() -> None:
    text = load("scalarlg").replace(b"9292394834772304023312", b"3")
    m = parse_message(text)
    with pytest.raises(RemoteProtocolError, match="Retry-After"):
        _ = m.retry_after


def parse_request_bytes(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_3_2_1_badbranch_magic_cookie_without_identifier() -> None:
    """A parser must not break; the transaction layer decides (400 or RFC 2543 matching)."""
    m = parse_request("badbranch")
    assert m.via.branch == "z9hG4bK"
    assert not m.via.has_rfc3261_branch


def test_3_3_2_unkscm_unknown_request_uri_scheme_parses_for_a_416() -> None:
    m = parse_request("unkscm")
    assert m.uri == AbsoluteUri("nobodyKnowsThisScheme", "totallyopaquecontent")


def test_3_3_3_novelsc_known_but_atypical_scheme() -> None:
    m = parse_request("novelsc")
    assert m.uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")


def test_3_3_4_unksm2_unknown_schemes_in_header_fields() -> None:
    m = parse_request("unksm2")
    assert m.to.uri == AbsoluteUri("isbn", "2983792873")
    assert m.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert m.from_.tag == "3234233"
    assert [c.uri for c in m.contacts] == [AbsoluteUri("name", "John_Smith")]


def test_3_3_5_bext01_require_and_proxy_require() -> None:
    m = parse_request("bext01")
    assert m.require == ("nothingSupportsThis", "nothingSupportsThisEither")
    assert m.headers.values("Proxy-Require") == (
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    )


def test_3_3_6_invut_unknown_content_type() -> None:
    m = parse_request("invut")
    assert m.content_type == "application/unknownformat"
    assert m.body.startswith(b"<audio>") and len(m.body) == 40


def test_3_3_7_regaut01_unknown_authorization_scheme() -> None:
    m = parse_request("regaut01")
    value = m.headers.get("Authorization")
    assert value is not None
    credentials = parse_credentials(value)
    assert credentials.scheme == "NoOneKnowsThisScheme"
    assert not credentials.is_digest
    assert credentials.get("opaque-data") == "here"


def test_3_3_10_bcast_broadcast_via_in_a_response() -> None:
    m = parse_message(load("bcast"))
    assert isinstance(m, Response)
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def test_3_3_11_zeromf_max_forwards_zero() -> None:
    assert parse_request("zeromf").max_forwards == 0


def test_3_3_12_cparam01_contact_parameter_in_addr_spec_form() -> None:
    (contact,) = parse_request("cparam01").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params == ()
    assert contact.has_param("unknownparam")


def test_3_3_13_cparam02_uri_parameter_inside_angle_brackets() -> None:
    (contact,) = parse_request("cparam02").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.has_param("unknownparam")
    assert contact.params == ()


def test_3_3_14_regescrt_escaped_header_in_a_contact_uri() -> None:
    (contact,) = parse_request("regescrt").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.get_header("Route") == "<sip:sip.example.com>"


def test_3_3_15_sdp01_unacceptable_accept_still_parses() -> None:
    m = parse_request("sdp01")
    assert m.headers.values("Accept") == ("text/nobodyKnowsThis",)
    media = parse_answer(m.body)
    assert (media.address, media.port, media.codec) == ("192.0.2.5", 49217, Codec.PCMU)


def test_3_4_1_inv2543_rfc2543_syntax() -> None:
    m = parse_request("inv2543")
    assert m.via.branch is None
    assert m.max_forwards is None
    assert m.from_.tag is None
    assert m.content_length is None
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"RTP/AVP 0\r\n")


def test_extra_test_dat_is_rejected() -> None:
    """test.dat is not from the RFC: no SIP-Version and a header line without ':'."""
    with pytest.raises(RemoteProtocolError, match="Request-Line must be"):
        parse_message(load("test"))
