from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import CSeq, LocalProtocolError, Reason, RemoteProtocolError, Via
from voipalert.sip.fields import parse_retry_after
from voipalert.sip.status import reason_phrase, status_class


def test_via_parse_and_accessors() -> None:
    via = Via.parse(
        "SIP / 2.0 / tcp  pbx.example.com : 5061 ; branch = z9hG4bKa1 ;rport=40000;"
        "received=203.0.113.7;maddr=239.1.1.1"
    )
    assert (via.protocol, via.transport, via.sent_by) == ("SIP/2.0", "TCP", "pbx.example.com:5061")
    assert (via.host, via.port) == ("pbx.example.com", 5061)
    assert (via.branch, via.rport) == ("z9hG4bKa1", 40000)
    assert (via.received, via.maddr) == ("203.0.113.7", "239.1.1.1")
    assert via.has_rport and via.has_rfc3261_branch
    assert via.format() == (
        "SIP/2.0/TCP pbx.example.com:5061;branch=z9hG4bKa1;rport=40000;received=203.0.113.7;"
        "maddr=239.1.1.1"
    )


def test_via_ipv6_and_edits() -> None:
    via = Via.parse("SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKx;received=2001:db8::9")
    assert via.host == "[2001:db8::5]" and via.received == "2001:db8::9"
    updated = via.with_param("rport", "5062").without_param("received")
    assert str(updated) == "SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKx;rport=5062"
    assert not Via(host="h").has_rfc3261_branch
    assert Via(host="h").with_param("rport").format() == "SIP/2.0/UDP h;rport"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("SIP/2.0/UDP", "expected whitespace"),
        ("SIP/2.0 UDP host", "expected '/'"),
        ("SIP/2.0/UDP host;;", "parameter name"),
        ("SIP/2.0/UDP host:99999", "bad port"),
        ("SIP/2.0/UDP [::1", "unterminated IPv6"),
        ("SIP/2.0/UDP [::1%a b]", "IPv6 zone"),
        ("SIP/2.0/UDP host junk", "unexpected text"),
        ("SIP/2.0/UDP h;rport=x", "bad port"),
    ],
)
def test_via_malformed(text: str, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        _ = Via.parse(text).rport


def test_via_format_refuses_bad_parts() -> None:
    with pytest.raises(LocalProtocolError, match="transport"):
        Via(host="h", transport="U DP").format()
    with pytest.raises(LocalProtocolError, match="Via host"):
        Via(host="h\r\nX: y").format()
    with pytest.raises(LocalProtocolError, match="port"):
        Via(host="h", port=70000).format()
    with pytest.raises(LocalProtocolError, match="control character"):
        Via(host="h", params=(("branch", '"a\nb"'),)).format()


def test_cseq() -> None:
    assert CSeq.parse(" 0009 \t INVITE ") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    cases = [
        ("INVITE", "sequence number"),
        ("1INVITE", "whitespace"),
        ("1 ", "method"),
        ("2147483648 BYE", r"2\*\*31"),
    ]
    for bad, fragment in cases:
        with pytest.raises(RemoteProtocolError, match=fragment):
            CSeq.parse(bad)
    with pytest.raises(LocalProtocolError):
        CSeq(-1, "BYE").format()
    with pytest.raises(LocalProtocolError):
        CSeq(1, "B YE").format()


def test_reason_rfc3326() -> None:
    reason = Reason.parse('Q.850 ;cause=16 ;text="Normal call clearing"')
    assert reason == Reason("Q.850", 16, "Normal call clearing")
    assert reason.format() == 'Q.850;cause=16;text="Normal call clearing"'
    assert Reason.parse('SIP;cause=200;text="Call completed elsewhere"').cause == 200
    with pytest.raises(RemoteProtocolError, match="bad cause"):
        Reason.parse("Q.850;cause=x")
    with pytest.raises(LocalProtocolError, match="Reason text"):
        Reason("SIP", 600, "busy\r\n").format()


def test_retry_after_and_status_helpers() -> None:
    assert parse_retry_after("18000;duration=3600") == 18000
    assert parse_retry_after("120 (I'm in a meeting)") == 120
    with pytest.raises(RemoteProtocolError, match="Retry-After"):
        parse_retry_after("4294967296")
    assert reason_phrase(486) == "Busy Here"
    assert reason_phrase(499) == "Bad Request"
    assert reason_phrase(701) == "Unknown"
    assert status_class(487) == 400


_header_text = st.text(alphabet=st.sampled_from(list(' \t;,=:"<>/\\[]%@.0123456789abcSIPUDz\x00é')))


@settings(max_examples=300, deadline=None)
@given(text=_header_text)
def test_random_values_raise_nothing_but_remote_protocol_error(text: str) -> None:
    for parse in (Via.parse, CSeq.parse, Reason.parse, parse_retry_after):
        try:
            value = parse(text)
        except RemoteProtocolError:
            continue
        if isinstance(value, Via):
            for name in ("branch", "rport", "received", "sent_by"):
                try:
                    getattr(value, name)
                except RemoteProtocolError:
                    pass
