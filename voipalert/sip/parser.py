"""Bytes → ``Request | Response`` (RFC 3261 §7, §18.3, §25; RFC 4475).

Public API:

* ``parse_message(data: bytes) -> Request | Response`` — one datagram (or one message cut
  out of a stream by ``framing.StreamFramer``). Any malformed input raises exactly
  ``RemoteProtocolError`` with a precise message. When only the validation of the headers
  failed, the error carries the message parsed so far in ``partial`` and the response a UAS
  should answer with in ``status_hint`` (400, or 505 for another SIP version).
* ``MAX_MESSAGE_BYTES``, ``MAX_HEADER_COUNT``, ``MAX_LINE_CHARS`` — the hard caps.
* ``parse_header_block(head) -> HeaderBlock`` — the first half of the parser; the stream
  framer uses it to read Content-Length before the body arrives.

What the parser accepts and why:

* Leading CRLFs before the start line are skipped (§7.5); lines may end in LF alone.
* Header names are tokens; LWS around ``:`` and folded continuation lines are accepted
  (a fold counts as one SP, §7.3.1). The Request-Line must be exactly
  ``METHOD SP URI SP SIP/2.0`` (RFC 4475 §3.1.2.8-3.1.2.10 are rejected).
* Body: ``Content-Length`` bytes; extra bytes in a datagram are discarded (§18.3,
  RFC 4475 §3.1.1.8); fewer bytes than announced, a negative or repeated Content-Length is an
  error (RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9). Without Content-Length the body is the rest
  of the datagram (RFC 4475 §3.4.1).
* Validated at once: Via (each), From, To, Call-ID, CSeq (method matching a request's),
  Max-Forwards (0-255), Contact, and a Request-URI without ``?headers`` (§19.1.1). Other
  headers are checked when their accessor is used (``message.expires`` ...), so a malformed
  Date does not reject a call (RFC 4475 §3.1.2.12).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.grammar import (
    CONTROL_CHARS,
    MAX_DELTA_SECONDS,
    is_control,
    is_token,
    parse_uint,
)
from voipalert.sip.headers import Headers
from voipalert.sip.message import Request, Response
from voipalert.sip.uri import SipUri, Uri, parse_uri

MAX_MESSAGE_BYTES: Final = 65_535
MAX_HEADER_COUNT: Final = 256
MAX_LINE_CHARS: Final = 8_192
REQUIRED_HEADERS: Final = ("Via", "From", "To", "Call-ID", "CSeq")
SINGLE_HEADERS: Final = ("From", "To", "Call-ID", "CSeq", "Max-Forwards")

_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK: Final = re.compile(r"\r?\n")
_VERSION: Final = re.compile(r"SIP/([0-9]{1,4})\.([0-9]{1,4})", re.IGNORECASE | re.ASCII)
_STATUS_CODE: Final = re.compile(r"[1-6][0-9][0-9]", re.ASCII)


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    uri: Uri


@dataclass(frozen=True, slots=True)
class StatusLine:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """The start line and headers of a message; ``version_error`` is set for a well-formed
    start line of another SIP version (answered with 505 once the headers are known)."""

    start: RequestLine | StatusLine
    headers: Headers
    version_error: str | None = None

    @property
    def content_length(self) -> int | None:
        values = self.headers.get_all("Content-Length")
        if len(values) > 1:
            raise RemoteProtocolError(f"Content-Length appears {len(values)} times")
        if not values:
            return None
        return parse_uint(values[0], "Content-Length", MAX_DELTA_SECONDS)

    def build(self, body: bytes) -> Request | Response:
        if isinstance(self.start, RequestLine):
            return Request(self.start.method, self.start.uri, self.headers, body)
        return Response(self.start.status, self.start.reason, self.headers, body)


def split_head(data: bytes) -> tuple[int, int, int] | None:
    """(start of the start line, end of the header block, start of the body), or None
    when the empty line that ends the headers has not arrived."""
    start = len(data) - len(data.lstrip(b"\r\n"))
    match = _HEAD_END.search(data, start)
    if match is None:
        return None
    return start, match.start(), match.end()


def parse_message(data: bytes) -> Request | Response:
    """Parse one SIP message; see the module docstring for the rules."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise RemoteProtocolError(
            f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}", status_hint=513
        )
    bounds = split_head(data)
    if bounds is None:
        if not data.strip(b"\r\n"):
            raise RemoteProtocolError("empty message (only CRLF keep-alive bytes)")
        raise RemoteProtocolError("no empty line after the headers")
    start, head_end, body_start = bounds
    block = parse_header_block(data[start:head_end])
    try:
        body = _frame_body(block, data[body_start:])
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(str(exc), partial=block.build(b"")) from None
    message = block.build(body)
    _validate(message, block.version_error)
    return message


def parse_header_block(head: bytes) -> HeaderBlock:
    """Parse the start line and header fields (no body, no validation of values)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"header section is not UTF-8 (byte {exc.start})") from None
    lines = _LINE_BREAK.split(text)
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise RemoteProtocolError(f"line {number} is longer than {MAX_LINE_CHARS} characters")
    start, version_error = _parse_start_line(lines[0])
    return HeaderBlock(start, Headers(_parse_fields(lines[1:])), version_error)


def _parse_start_line(line: str) -> tuple[RequestLine | StatusLine, str | None]:
    found = CONTROL_CHARS.search(line)
    if found is not None:
        raise RemoteProtocolError(f"control character {found.group()!r} in the start line")
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not _STATUS_CODE.fullmatch(code):
            raise RemoteProtocolError(f"Status-Line: status code {code!r} is not 100-699")
        return StatusLine(int(code), reason), _check_version(version)
    parts = line.split(" ")
    if len(parts) != 3:
        raise RemoteProtocolError(
            f"Request-Line must be 'METHOD SP Request-URI SP SIP-Version', got {line!r}"
        )
    method, uri_text, version = parts
    if not is_token(method):
        raise RemoteProtocolError(f"Request-Line: method {method!r} is not a token")
    version_error = _check_version(version)
    return RequestLine(method, parse_uri(uri_text, "Request-URI")), version_error


def _check_version(version: str) -> str | None:
    match = _VERSION.fullmatch(version)
    if match is None:
        raise RemoteProtocolError(f"bad SIP-Version {version!r}")
    if (int(match[1]), int(match[2])) != (2, 0):
        return f"SIP version {version} is not supported"
    return None


def _parse_fields(lines: list[str]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise RemoteProtocolError("continuation line before the first header")
            name, value = fields[-1]
            # RFC 3261 §7.3.1: a fold is equivalent to a single SP.
            continuation = line.strip(" \t")
            fields[-1] = (name, f"{value} {continuation}".strip(" \t"))
            if len(fields[-1][1]) > MAX_LINE_CHARS:
                raise RemoteProtocolError(f"header {name} is longer than {MAX_LINE_CHARS}")
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon:
            raise RemoteProtocolError(f"header line without ':': {line[:80]!r}")
        if not is_token(name):
            raise RemoteProtocolError(f"header name {name[:80]!r} is not a token")
        fields.append((name, value.strip(" \t")))
        if len(fields) > MAX_HEADER_COUNT:
            raise RemoteProtocolError(f"more than {MAX_HEADER_COUNT} header fields")
    for name, value in fields:
        _check_value(name, value)
    return fields


def _check_value(name: str, value: str) -> None:
    """Control characters may appear only as a quoted-pair inside a quoted string
    (RFC 3261 §25.1; RFC 4475 §3.1.1.2 has BEL, NUL and DEL escaped in a display name)."""
    if CONTROL_CHARS.search(value) is None:
        return
    in_quotes = escaped = False
    for index, ch in enumerate(value):
        if escaped:
            escaped = False
            if ch > "\x7f":
                raise RemoteProtocolError(f"{name}: bad quoted-pair at column {index}")
            continue
        if in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif is_control(ch):
            raise RemoteProtocolError(f"{name}: control character {ch!r} at column {index}")


def _frame_body(block: HeaderBlock, rest: bytes) -> bytes:
    length = block.content_length
    if length is None:
        return rest
    if length > len(rest):
        raise RemoteProtocolError(
            f"Content-Length is {length} but only {len(rest)} body bytes arrived"
        )
    return rest[:length]


def _validate(message: Request | Response, version_error: str | None) -> None:
    try:
        if version_error is not None:
            raise RemoteProtocolError(version_error, status_hint=505)
        _validate_headers(message)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(str(exc), status_hint=exc.status_hint, partial=message) from None


def _validate_headers(message: Request | Response) -> None:
    if isinstance(message, Request) and isinstance(message.uri, SipUri) and message.uri.headers:
        raise RemoteProtocolError("Request-URI must not contain headers (RFC 3261 §19.1.1)")
    missing = [name for name in REQUIRED_HEADERS if name not in message.headers]
    if missing:
        raise RemoteProtocolError(f"missing required header(s): {', '.join(missing)}")
    for name in SINGLE_HEADERS:
        count = message.headers.count(name)
        if count > 1:
            raise RemoteProtocolError(f"{name} appears {count} times (it is single-valued)")
    # CSeq first: RFC 4475 §3.1.2.4 expects its error to be the one reported.
    cseq = message.cseq
    if isinstance(message, Request) and cseq.method != message.method:
        raise RemoteProtocolError(
            f"CSeq method {cseq.method} does not match the request method {message.method}"
        )
    _ = (message.vias, message.from_, message.to, message.call_id, message.max_forwards)
    _ = message.contacts
