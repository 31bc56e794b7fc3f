from __future__ import annotations

import pytest

from voipalert.sip import CSeq, Headers, LocalProtocolError, RemoteProtocolError, header_key


def test_lookup_ignores_case_and_understands_compact_forms() -> None:
    headers = Headers([("i", "abc"), ("CALL-ID", "def"), ("v", "SIP/2.0/UDP a"), ("Via", "x")])
    assert header_key("I") == "call-id" and header_key("Via") == "via"
    assert headers.get("call-id") == "abc"
    assert headers.get_all("Call-Id") == ("abc", "def")
    assert headers.count("VIA") == 2
    assert "v" in headers and "Route" not in headers and 3 not in headers
    assert headers.get("Route") is None


def test_values_split_on_commas_outside_quotes_and_angle_brackets() -> None:
    headers = Headers(
        [
            ("Contact", '"Smith, John" <sip:j@h;x=a,b>;q=1, <sip:k@h>'),
            ("m", "<sip:l@h>"),
            ("Allow", ""),
        ]
    )
    assert headers.values("Contact") == (
        '"Smith, John" <sip:j@h;x=a,b>;q=1',
        "<sip:k@h>",
        "<sip:l@h>",
    )
    assert headers.values("Allow") == ()
    with pytest.raises(RemoteProtocolError, match="empty element"):
        Headers([("Allow", "INVITE,,BYE")]).values("Allow")
    with pytest.raises(RemoteProtocolError, match="unterminated"):
        Headers([("Contact", '"open <sip:a@h>')]).values("Contact")


def test_edits_return_new_stores() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("Via", "b")])
    assert list(headers.prepended("via", "z")) == [
        ("via", "z"),
        ("Via", "a"),
        ("To", "t"),
        ("Via", "b"),
    ]
    assert headers.prepended("Route", "r").fields[0] == ("Route", "r")
    assert list(headers.replaced("v", "only")) == [("Via", "only"), ("To", "t")]
    assert list(headers.replaced("CSeq", CSeq(2, "BYE")))[-1] == ("CSeq", "2 BYE")
    assert list(headers.removed("VIA")) == [("To", "t")]
    assert list(headers.appended("X", "1"))[-1] == ("X", "1")
    assert list(headers) == [("Via", "a"), ("To", "t"), ("Via", "b")]
    assert headers == Headers(headers.fields) and hash(headers) == hash(Headers(headers.fields))
    assert len(headers) == 3 and "Headers(" in repr(headers)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("X", "a\r\nInjected: yes", "control character"),
        ("X", "nul\x00", "control character"),
        ("X Y", "v", "header name"),
        ("", "v", "header name"),
        ("X:", "v", "header name"),
    ],
)
def test_check_refuses_unsafe_fields(name: str, value: str, fragment: str) -> None:
    with pytest.raises(LocalProtocolError, match=fragment):
        Headers([(name, value)]).check()


def test_tabs_are_allowed() -> None:
    Headers([("Subject", "a\tb")]).check()
