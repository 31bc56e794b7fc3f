from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import AbsoluteUri, LocalProtocolError, RemoteProtocolError, SipUri, parse_uri
from voipalert.sip.uri import PARAM_CHARS, USER_CHARS, escape_user


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:alice@example.com", SipUri(user="alice", host="example.com")),
        ("SIPS:Bob@Example.COM:5061", SipUri(scheme="sips", user="Bob", host="Example.COM",
                                             port=5061)),
        ("sip:192.0.2.1;transport=tcp;lr", SipUri(host="192.0.2.1",
                                                  params=(("transport", "tcp"), ("lr", None)))),
        ("sip:+4930123@gw.example.com;user=phone", SipUri(user="+4930123", host="gw.example.com",
                                                          params=(("user", "phone"),))),
        ("sip:[2001:db8::1]:5070", SipUri(host="[2001:db8::1]", port=5070)),
        ("sip:u:secret@h", SipUri(user="u", password="secret", host="h")),
        ("sip:h?Subject=hi&Priority=urgent", SipUri(host="h", headers=(("Subject", "hi"),
                                                                       ("Priority", "urgent")))),
        ("tel:+1-201-555-0123;phone-context=example.com",
         SipUri(scheme="tel", user="+1-201-555-0123", host="",
                params=(("phone-context", "example.com"),))),
        ("urn:service:sos", AbsoluteUri("urn", "service:sos")),
    ],
)  # fmt: skip
def test_parse_and_format(text: str, expected: SipUri | AbsoluteUri) -> None:
    uri = parse_uri(text)
    assert uri == expected
    if isinstance(uri, SipUri) and uri.scheme != text[: len(uri.scheme)]:
        assert uri.format() == uri.scheme + text[len(uri.scheme) :]
    else:
        assert uri.format() == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("alice@example.com", "no scheme"),
        ("sip:", "bad host"),
        ("sip:@h", "empty user"),
        ("sip:a b@h", "not allowed"),
        ("sip:a@h:99999", "bad port"),
        ("sip:a@h:", "bad port"),
        ("sip:a@[::1", "bad host and port"),
        ("sip:a@[zz::1]", "bad IPv6"),
        ("sip:a@[fe80::1%25eth0]", "IPv6 zone"),
        ("sip:a@300.1.2.3", "bad IPv4"),
        ("sip:a@h..com", "bad host"),
        ("sip:a@h;", "empty URI parameter"),
        ("sip:a@h;x=", "empty URI parameter"),
        ("sip:a@h?x", "bad URI header"),
        ("sip:a%zz@h", "bad %-escape"),
        ("tel:", "without a number"),
        ("tel:+1 555", "not allowed"),
        ("1sip:a@h", "no scheme"),
        ("x:", "empty x: URI"),
        ("http://a b", "not allowed"),
    ],
)
def test_malformed_uris(text: str, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        parse_uri(text)


def test_sip_uri_parse_refuses_other_schemes() -> None:
    with pytest.raises(RemoteProtocolError, match="not a SIP or tel URI"):
        SipUri.parse("http://example.com")
    assert SipUri.parse("sip:h") == SipUri(host="h")


def test_params_escapes_and_helpers() -> None:
    uri = SipUri.parse("sip:alice@pbx.example.com:5060;%74ransport=TCP;lr")
    assert uri.transport == "tcp"
    assert uri.has_param("lr") and uri.get_param("lr") is None
    assert uri.host_port == "pbx.example.com:5060"
    updated = uri.with_param("transport", "tls").with_param("x", "a b").without_param("lr")
    assert updated.format() == "sip:alice@pbx.example.com:5060;%74ransport=tls;x=a%20b"
    assert updated.get_param("x") == "a b"
    assert str(SipUri(host="h").with_param("lr")) == "sip:h;lr"


def test_escape_user_for_free_text() -> None:
    assert escape_user("+49 30 1234") == "+49%2030%201234"
    assert escape_user("a@b%c") == "a%40b%25c"
    assert SipUri(user=escape_user("John Doe"), host="h").unescaped_user == "John Doe"
    with pytest.raises(LocalProtocolError, match="control character"):
        escape_user("x\r\n")


def test_uri_comparison_rfc3261_19_1_4() -> None:
    a = SipUri.parse("sip:%61lice@ATLANTA.com;transport=TCP")
    assert a.matches(SipUri.parse("sip:alice@AtLanTa.CoM;Transport=tcp"))
    assert not SipUri.parse("sip:alice@atlanta.com").matches(SipUri.parse("sip:ALICE@atlanta.com"))
    assert not SipUri.parse("sip:bob@biloxi.com").matches(SipUri.parse("sip:bob@biloxi.com:5060"))
    assert not SipUri.parse("sip:carol@chicago.com").matches(
        SipUri.parse("sip:carol@chicago.com;transport=tcp")
    )
    assert SipUri.parse("sip:carol@chicago.com;newparam=5").matches(
        SipUri.parse("sip:carol@chicago.com;security=on")
    )
    assert not SipUri.parse("sip:h").matches(AbsoluteUri("sip", "h"))
    assert AbsoluteUri("Urn", "a%41").matches(AbsoluteUri("urn", "aA"))


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        (SipUri(host="h", user="a\r\nb"), "URI user"),
        (SipUri(host="h", user=""), "URI user is empty"),
        (SipUri(host="h\r\n"), "URI host"),
        (SipUri(host="h", password="p\x00"), "URI password"),
        (SipUri(host="h", params=(("lr\n", None),)), "URI parameter name"),
        (SipUri(host="h", params=(("x", "a\r\nb"),)), "URI parameter x"),
        (SipUri(host="h", headers=(("Subject", "a\nb"),)), "URI header Subject"),
        (SipUri(host="h", port=0), "port 0"),
        (SipUri(scheme="http", host="h"), "not sip, sips or tel"),
        (SipUri(scheme="tel", user="+1", host="h"), "number and parameters only"),
        (AbsoluteUri("urn", "x\ny"), "URI"),
    ],
)
def test_format_refuses_what_would_break_the_wire(uri: SipUri | AbsoluteUri, fragment: str) -> None:
    with pytest.raises(LocalProtocolError, match=fragment):
        uri.format()


_users = st.text(alphabet=sorted(USER_CHARS - {"%"}), min_size=1, max_size=16)
_values = st.text(alphabet=sorted(PARAM_CHARS - {"%"}), min_size=1, max_size=10)
_hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{1,6}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | _users,
    host=_hosts,
    port=st.none() | st.integers(1, 65535),
    params=st.lists(st.tuples(_values, st.none() | _values), max_size=3),
)
def test_generated_uris_round_trip(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
) -> None:
    if host.replace(".", "").isdigit() and host.count(".") != 3:
        host = "h" + host  # an all-numeric name that is not IPv4 is not a hostname
    uri = SipUri(scheme=scheme, user=user, host=host, port=port, params=tuple(params))
    assert parse_uri(uri.format()) == uri


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_random_text_raises_nothing_but_remote_protocol_error(text: str) -> None:
    try:
        parse_uri(text).format()
    except (RemoteProtocolError, LocalProtocolError):
        pass
