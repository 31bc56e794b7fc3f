from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import AbsoluteUri, LocalProtocolError, NameAddr, RemoteProtocolError, SipUri


@pytest.mark.parametrize(
    ("text", "display", "uri", "params"),
    [
        ('"Alice" <sip:alice@a.example>;tag=1', "Alice", "sip:alice@a.example", (("tag", "1"),)),
        ("Alice Smith <sip:a@h>", "Alice Smith", "sip:a@h", ()),
        ("<sip:a@h;lr>;q=0.5", None, "sip:a@h;lr", (("q", "0.5"),)),
        ("sip:a@h;tag=x", None, "sip:a@h", (("tag", "x"),)),
        ('"" <sip:a@h>', "", "sip:a@h", ()),
        ('"a\\"b\\\\c" <sip:a@h>', 'a"b\\c', "sip:a@h", ()),
        ('"Zoë Ünïcödé" <sip:z@h>', "Zoë Ünïcödé", "sip:z@h", ()),
        ('  "x"<sip:a@h>  ;  expires = 60 ', "x", "sip:a@h", (("expires", "60"),)),
        ('<sip:a@h>;x="quoted, with comma"', None, "sip:a@h", (("x", '"quoted, with comma"'),)),
        ("sip:[::1]:5060;received=::1", None, "sip:[::1]:5060", (("received", "::1"),)),
        ("<urn:uuid:f81d4fae-7dec>", None, "urn:uuid:f81d4fae-7dec", ()),
    ],
)
def test_parse(text: str, display: str | None, uri: str, params: tuple[object, ...]) -> None:
    address = NameAddr.parse(text)
    assert address.display_name == display
    assert address.uri.format() == uri
    assert address.params == params
    assert NameAddr.parse(address.format()) == address


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('"open <sip:a@h>', "unterminated quoted string"),
        ("Bell, Alexander <sip:a@h>", "unquoted display name contains ','"),
        ("< sip:a@h >", "whitespace or nothing inside <>"),
        ("<>", "whitespace or nothing inside <>"),
        ("<sip:a@h", "missing '>'"),
        ('"x" sip:a@h', "expected '<'"),
        ("sip:a@h?X=y", "must be enclosed in <>"),
        ("<sip:a@h>;;", "expected parameter name"),
        ("<sip:a@h>;tag=", "empty value"),
        ("<sip:a@h> trailing", "unexpected text"),
        ("", "no scheme"),
        ('"\x01" <sip:a@h>', "control character"),
    ],
)
def test_malformed(text: str, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        NameAddr.parse(text)


def test_tag_expires_and_edits() -> None:
    address = NameAddr(SipUri(user="a", host="h"), "Alerts")
    tagged = address.with_tag("abc").with_param("expires", "3600")
    assert tagged.format() == '"Alerts" <sip:a@h>;tag=abc;expires=3600'
    assert (tagged.tag, tagged.expires) == ("abc", 3600)
    assert tagged.with_tag("def").tag == "def"
    assert tagged.without_param("expires").format() == '"Alerts" <sip:a@h>;tag=abc'
    assert tagged.with_param("note", "two words").get_param("note") == "two words"
    assert tagged.with_param("lr").has_param("lr")
    with pytest.raises(RemoteProtocolError, match="Contact expires"):
        _ = tagged.with_param("expires", "soon").expires
    assert str(NameAddr(AbsoluteUri("tel2", "1"))) == "<tel2:1>"


@pytest.mark.parametrize("name", ["Alert\r\nVia: x", "line\nfeed", "nul\x00", "del\x7f"])
def test_display_name_injection_is_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="display name"):
        NameAddr(SipUri(host="h"), name).format()


def test_params_are_checked_on_format() -> None:
    with pytest.raises(LocalProtocolError, match="parameter name"):
        NameAddr(SipUri(host="h"), params=(("a b", None),)).format()
    with pytest.raises(LocalProtocolError, match="not a token or host"):
        NameAddr(SipUri(host="h"), params=(("x", "a b"),)).format()
    with pytest.raises(LocalProtocolError, match="control character"):
        NameAddr(SipUri(host="h"), params=(("x", '"a\r\nb"'),)).format()


@settings(max_examples=200, deadline=None)
@given(
    display=st.none()
    | st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
    tag=st.from_regex(r"[A-Za-z0-9.!%*_+`'~-]{1,20}", fullmatch=True),
)
def test_generated_display_names_round_trip(display: str | None, tag: str) -> None:
    address = NameAddr(SipUri(user="u", host="example.com"), display, (("tag", tag),))
    assert NameAddr.parse(address.format()) == address


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(' \t;,=:"<>\\%@.?sipa1\x00é')), max_size=40))
def test_random_text_raises_nothing_but_remote_protocol_error(text: str) -> None:
    try:
        address = NameAddr.parse(text)
    except RemoteProtocolError:
        return
    for name in ("tag", "expires"):
        try:
            getattr(address, name)
        except RemoteProtocolError:
            pass
