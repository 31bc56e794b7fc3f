from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voipalert.sip import CSeq, RemoteProtocolError, Request, Response, parse_message
from voipalert.sip.parser import MAX_HEADER_COUNT, MAX_LINE_CHARS, MAX_MESSAGE_BYTES

DATA = Path(__file__).parent.parent / "data"
GOLDEN = sorted((DATA / "sip").glob("*.sip"))
VALID_GOLDEN = [path for path in GOLDEN if not path.stem.endswith("_invalid")]
CORPUS = [path.read_bytes() for path in VALID_GOLDEN] + [
    path.read_bytes() for path in sorted((DATA / "rfc4475").glob("*.dat"))
]

MINIMAL = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
    b"From: <sip:b@example.com>;tag=1\r\n"
    b"To: <sip:a@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("body_truncated_invalid", "Content-Length is 234 but only 214 body bytes"),
        ("status_code_invalid", "status code '99'"),
        ("no_empty_line_invalid", "no empty line after the headers"),
        ("header_without_colon_invalid", "header line without ':'"),
        ("utf8_invalid", "not UTF-8"),
        ("cseq_invalid", "CSeq: expected a sequence number"),
    ],
)
def test_invalid_golden_messages(name: str, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        parse_message((DATA / "sip" / f"{name}.sip").read_bytes())


def test_every_invalid_golden_file_is_tested() -> None:
    invalid = {path.stem for path in GOLDEN if path.stem.endswith("_invalid")}
    assert len(invalid) == 6


def test_odd_but_valid_lower_case_compact_folded_lf_only() -> None:
    data = (
        b"\r\n\r\n"  # CRLFs before the start line are ignored (RFC 3261 section 7.5)
        b"options sip:a@example.com SIP/2.0\n"
        b"v : SIP/2.0/UDP 192.0.2.1\n ;branch=z9hG4bKx\n"
        b"F:\t<sip:b@example.com>\n\t;tag=1\n"
        b"TO:<sip:a@example.com>\n"
        b"i:c1\n"
        b"cseq:   1\n    options\n"
        b"l:  0\n"
        b"\n"
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.method == "options"
    assert m.via.branch == "z9hG4bKx"
    assert m.from_.tag == "1"
    assert m.cseq == CSeq(1, "options")
    assert m.call_id == "c1"
    assert m.content_length == 0


def test_asterisk_double_space_content_length() -> None:
    m = parse_message(MINIMAL.replace(b"Content-Length: 0", b"Content-Length:  0"))
    assert m.content_length == 0


def test_missing_content_length_means_rest_of_datagram() -> None:
    data = MINIMAL.replace(b"Content-Length: 0\r\n", b"") + b"hello\r\n\r\nworld"
    assert parse_message(data).body == b"hello\r\n\r\nworld"


def test_body_with_blank_lines_and_binary() -> None:
    body = b"line\r\n\r\n\x00\xff\r\n\r\n"
    data = MINIMAL.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)) + body
    assert parse_message(data).body == body


def test_status_line_variants() -> None:
    base = (
        b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    for line, status, reason in [
        (b"SIP/2.0 180 Ringing", 180, "Ringing"),
        (b"SIP/2.0 699 Whatever you like", 699, "Whatever you like"),
        (b"SIP/2.0 183", 183, ""),
        (b"sip/2.0 200 ok", 200, "ok"),
    ]:
        m = parse_message(line + b"\r\n" + base)
        assert isinstance(m, Response)
        assert (m.status, m.reason) == (status, reason)
    for bad in (b"SIP/2.0 099 x", b"SIP/2.0 700 x", b"SIP/2.0 2000 x", b"SIP/2.0 20a x"):
        with pytest.raises(RemoteProtocolError, match="status code"):
            parse_message(bad + b"\r\n" + base)


def test_any_method_token() -> None:
    data = MINIMAL.replace(b"OPTIONS", b"FROBNICATE")
    m = parse_message(data)
    assert isinstance(m, Request) and m.method == "FROBNICATE"


@pytest.mark.parametrize(
    ("data", "fragment", "status_hint"),
    [
        (b"x" * (MAX_MESSAGE_BYTES + 1), "exceeds", 513),
        (b"\r\n\r\n", "keep-alive", 400),
        (b"", "empty message", 400),
        (MINIMAL.replace(b"Call-ID: c1", b"X: " + b"a" * MAX_LINE_CHARS), "longer than", 400),
        (
            MINIMAL.replace(b"Call-ID: c1", b"Call-ID: c1" + b"\r\nX: y" * MAX_HEADER_COUNT),
            f"more than {MAX_HEADER_COUNT}",
            400,
        ),
        (MINIMAL.replace(b"2.0\r\nVia", b"2.0\r\n fold\r\nVia", 1), "continuation line", 400),
        (b" " + MINIMAL, "Request-Line must be", 400),
        (MINIMAL.replace(b"Call-ID: c1", b"Call-ID: c\x001"), "control character", 400),
        (MINIMAL.replace(b"Call-ID: c1", b"Call-ID: c\r1"), "control character", 400),
        (MINIMAL.replace(b"SIP/2.0\r\n", b"SIP/2.0\x00\r\n", 1), "start line", 400),
        (MINIMAL.replace(b"SIP/2.0\r\n", b"SIP/2\r\n", 1), "SIP-Version", 400),
        (MINIMAL.replace(b"sip:a@example.com SIP", b"sip:a@exa mple.com SIP"), "Request", 400),
        (MINIMAL.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP["), "Via", 400),
        (MINIMAL.replace(b"CSeq: 1", b"CSeq: 2147483648"), "below 2", 400),
        (MINIMAL.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 OPTIONS x"), "CSeq", 400),
    ],
)
def test_malformed_datagrams(data: bytes, fragment: str, status_hint: int) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment) as info:
        parse_message(data)
    assert info.value.status_hint == status_hint


def test_extra_datagram_bytes_after_the_body_are_discarded() -> None:
    """RFC 3261 §18.3: bytes beyond Content-Length in a datagram MUST be discarded."""
    assert parse_message(MINIMAL + b"X").body == b""


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (b"Max-Forwards", b"9" * 5000),
        (b"Content-Length", b"9" * 5000),
        (b"CSeq", b"9" * 5000 + b" OPTIONS"),
        (b"Expires", b"9" * 5000),
    ],
)
def test_huge_numbers_are_remote_errors_not_int_conversion_errors(
    header: bytes, value: bytes
) -> None:
    """Python refuses int() on more than 4300 digits with a bare ValueError."""
    data = MINIMAL.replace(b"Call-ID: c1", b"Call-ID: c1\r\n" + header + b": " + value)
    data = data.replace(b"CSeq: 1 OPTIONS\r\n", b"") if header == b"CSeq" else data
    try:
        message = parse_message(data)
    except RemoteProtocolError as exc:
        assert header.decode() in str(exc)
        return
    with pytest.raises(RemoteProtocolError, match=header.decode()):
        _ = message.expires


def test_max_forwards_and_single_valued_headers() -> None:
    assert parse_message(MINIMAL + b"").max_forwards is None
    with_mf = MINIMAL.replace(b"Call-ID: c1", b"Call-ID: c1\r\nMax-Forwards: 256")
    with pytest.raises(RemoteProtocolError, match="Max-Forwards"):
        parse_message(with_mf)
    two_tos = MINIMAL.replace(b"Call-ID: c1", b"Call-ID: c1\r\nt: <sip:x@y>")
    with pytest.raises(RemoteProtocolError, match="To appears 2 times"):
        parse_message(two_tos)


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_nothing_but_remote_protocol_error(data: bytes) -> None:
    try:
        parse_message(data)
    except RemoteProtocolError:
        pass


INSERTIONS = [
    *(bytes([c]) for c in b' :;,"<>\x00%\\=@\xc3'),
    b"\r\n",
    b"\r\n ",
    b"0" * 30,
    b"9" * 5000,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.sampled_from(INSERTIONS))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
        else:
            end = position + draw(st.integers(1, 40))
            data[position:position] = data[position:end]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_raise_nothing_but_remote_protocol_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except RemoteProtocolError:
        return
    # Whatever parsed must also survive every accessor without another exception type.
    for name in (
        "vias", "cseq", "from_", "to", "call_id", "max_forwards", "content_length", "expires",
        "min_expires", "retry_after", "contacts", "route", "record_route", "allow",
        "supported", "require", "reasons", "content_type",
    ):  # fmt: skip
        try:
            getattr(message, name)
        except RemoteProtocolError:
            pass
