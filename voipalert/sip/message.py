"""SIP requests and responses as frozen values (RFC 3261 §7, §8.2.6).

Public API:

* ``Request(method, uri, headers=Headers(), body=b"")`` and
  ``Response(status, reason, headers=Headers(), body=b"")`` — frozen dataclasses.
  ``Request.build(method, uri, headers=[...], body=b"")`` and ``Response.build(...)`` check
  every token and value first (``LocalProtocolError``), so nothing unsafe is ever built.
* ``serialize() -> bytes``: the wire form. It refuses control characters in any name or
  value (``LocalProtocolError``) and always writes one correct ``Content-Length``.
* Typed accessors, each parsing on demand and raising ``RemoteProtocolError`` when the peer's
  value is malformed: ``vias``, ``via`` (the top one), ``cseq``, ``from_``, ``to``,
  ``call_id``, ``max_forwards``, ``content_length``, ``content_type``, ``expires``,
  ``min_expires``, ``retry_after``, ``contacts``, ``is_wildcard_contact``, ``route``,
  ``record_route``, ``allow``, ``supported``, ``require``, ``reasons``.
* Edits return a new message: ``with_header(name, value)`` (replace), ``with_added_header``,
  ``with_prepended_header``, ``without_header``, ``with_body(body, content_type)``,
  ``with_top_via(via)``, ``with_top_via_param(name, value)``.
* ``response_to(request, status, reason=None, *, headers=(), body=b"", to_tag=None)`` —
  a response with Via, From, To, Call-ID and CSeq copied as RFC 3261 §8.2.6.2 says, the
  To tag added when the request had none, and the default reason phrase.
* ``parse_message`` lives in ``voipalert.sip.parser`` (re-exported by ``voipalert.sip``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final, Self

from voipalert.sip.address import NameAddr
from voipalert.sip.errors import LocalProtocolError, RemoteProtocolError
from voipalert.sip.fields import CSeq, Reason, Via, parse_retry_after
from voipalert.sip.grammar import (
    MAX_DELTA_SECONDS,
    WORD_CHARS,
    check_text,
    check_token,
    is_token,
    parse_delta_seconds,
    parse_uint,
    split_list,
)
from voipalert.sip.headers import Formattable, HeaderInput, Headers, header_key
from voipalert.sip.status import reason_phrase
from voipalert.sip.uri import Uri

SIP_VERSION: Final = "SIP/2.0"
MAX_MAX_FORWARDS: Final = 255


class Message:
    """What requests and responses share: headers, body and the typed accessors."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def _replaced(self, headers: Headers, body: bytes) -> Self:
        """A copy with these headers and body (each subclass is a frozen dataclass)."""
        raise NotImplementedError

    def _with_headers(self, headers: Headers) -> Self:
        return self._replaced(headers, self.body)

    def with_body(self, body: bytes, content_type: str | None = None) -> Self:
        headers = self.headers
        if content_type is not None:
            headers = headers.replaced("Content-Type", content_type)
        return self._replaced(headers, bytes(body))

    def _single(self, name: str) -> str | None:
        values = self.headers.get_all(name)
        if len(values) > 1:
            raise RemoteProtocolError(f"{name} appears {len(values)} times")
        return values[0] if values else None

    def _required(self, name: str) -> str:
        value = self._single(name)
        if value is None:
            raise RemoteProtocolError(f"missing {name} header")
        return value

    @property
    def vias(self) -> tuple[Via, ...]:
        return tuple(Via.parse(item) for item in self.headers.values("Via"))

    @property
    def via(self) -> Via:
        items = self.headers.values("Via")
        if not items:
            raise RemoteProtocolError("missing Via header")
        return Via.parse(items[0])

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self._required("CSeq"))

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self._required("From"), "From")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self._required("To"), "To")

    @property
    def call_id(self) -> str:
        value = self._required("Call-ID")
        local, at, host = value.partition("@")
        if not local or (at and not host) or set(local + host) - WORD_CHARS:
            raise RemoteProtocolError(f"Call-ID: {value!r} is not word[@word]")
        return value

    @property
    def max_forwards(self) -> int | None:
        value = self._single("Max-Forwards")
        if value is None:
            return None
        # RFC 3261 §20.22: 0-255.
        return parse_uint(value, "Max-Forwards", MAX_MAX_FORWARDS)

    @property
    def content_length(self) -> int | None:
        value = self._single("Content-Length")
        if value is None:
            return None
        return parse_uint(value, "Content-Length", MAX_DELTA_SECONDS)

    @property
    def content_type(self) -> str | None:
        """``type/subtype`` in lower case, parameters dropped."""
        value = self._single("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip(" \t").lower()

    @property
    def expires(self) -> int | None:
        value = self._single("Expires")
        return None if value is None else parse_delta_seconds(value, "Expires")

    @property
    def min_expires(self) -> int | None:
        value = self._single("Min-Expires")
        return None if value is None else parse_delta_seconds(value, "Min-Expires")

    @property
    def retry_after(self) -> int | None:
        value = self._single("Retry-After")
        return None if value is None else parse_retry_after(value)

    @property
    def is_wildcard_contact(self) -> bool:
        return self.headers.values("Contact") == ("*",)

    @property
    def contacts(self) -> tuple[NameAddr, ...]:
        items = self.headers.values("Contact")
        if "*" in items:
            if len(items) > 1:
                raise RemoteProtocolError("Contact: '*' mixed with addresses (§10.2.2)")
            return ()
        return tuple(NameAddr.parse(item, "Contact") for item in items)

    @property
    def route(self) -> tuple[NameAddr, ...]:
        return tuple(NameAddr.parse(item, "Route") for item in self.headers.values("Route"))

    @property
    def record_route(self) -> tuple[NameAddr, ...]:
        items = self.headers.values("Record-Route")
        return tuple(NameAddr.parse(item, "Record-Route") for item in items)

    @property
    def allow(self) -> tuple[str, ...]:
        return self._tokens("Allow")

    @property
    def supported(self) -> tuple[str, ...]:
        return self._tokens("Supported")

    @property
    def require(self) -> tuple[str, ...]:
        return self._tokens("Require")

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(Reason.parse(item) for item in self.headers.values("Reason"))

    def _tokens(self, name: str) -> tuple[str, ...]:
        items = self.headers.values(name)
        for item in items:
            if not is_token(item):
                raise RemoteProtocolError(f"{name}: {item!r} is not a token")
        return items

    def with_header(self, name: str, value: str | Formattable) -> Self:
        return self._with_headers(self.headers.replaced(name, value))

    def with_added_header(self, name: str, value: str | Formattable) -> Self:
        return self._with_headers(self.headers.appended(name, value))

    def with_prepended_header(self, name: str, value: str | Formattable) -> Self:
        return self._with_headers(self.headers.prepended(name, value))

    def without_header(self, name: str) -> Self:
        return self._with_headers(self.headers.removed(name))

    def with_top_via(self, via: Via) -> Self:
        """Replace the top Via element (even inside a comma-joined Via line)."""
        out: list[tuple[str, str]] = []
        done = False
        for name, value in self.headers:
            if not done and header_key(name) == "via":
                rest = split_list(value, "Via")[1:]
                value = ", ".join((via.format(), *rest))
                done = True
            out.append((name, value))
        if not done:
            raise LocalProtocolError("message has no Via to replace")
        return self._with_headers(Headers(out))

    def with_top_via_param(self, name: str, value: str | None = None) -> Self:
        return self.with_top_via(self.via.with_param(name, value))


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    """The wire form; Content-Length is always written and always equals len(body)."""
    check_text(start_line, "start line")
    headers.check()
    lines = [start_line]
    has_length = False
    for name, value in headers:
        if header_key(name) == "content-length":
            if has_length:
                continue
            value = str(len(body))
            has_length = True
        lines.append(f"{name}: {value}")
    if not has_length:
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(("", ""))
    return "\r\n".join(lines).encode() + body


@dataclass(frozen=True, slots=True)
class Request(Message):
    """A SIP request. ``uri`` is the Request-URI."""

    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def build(
        cls, method: str, uri: Uri, *, headers: Iterable[HeaderInput] = (), body: bytes = b""
    ) -> Request:
        """A request whose method, URI and headers are checked now, not at send time."""
        check_token(method, "method")
        uri.format()
        store = Headers(headers)
        store.check()
        return cls(method, uri, store, bytes(body))

    def _replaced(self, headers: Headers, body: bytes) -> Self:
        return replace(self, headers=headers, body=body)

    def serialize(self) -> bytes:
        check_token(self.method, "method")
        return _serialize(
            f"{self.method} {self.uri.format()} {SIP_VERSION}", self.headers, self.body
        )


@dataclass(frozen=True, slots=True)
class Response(Message):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def build(
        cls,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[HeaderInput] = (),
        body: bytes = b"",
    ) -> Response:
        _check_status(status)
        text = reason_phrase(status) if reason is None else reason
        check_text(text, "reason phrase")
        store = Headers(headers)
        store.check()
        return cls(status, text, store, bytes(body))

    def _replaced(self, headers: Headers, body: bytes) -> Self:
        return replace(self, headers=headers, body=body)

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def serialize(self) -> bytes:
        _check_status(self.status)
        line = f"{SIP_VERSION} {self.status} {self.reason}"
        return _serialize(line, self.headers, self.body)


def _check_status(status: int) -> None:
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} is not 100-699")


def response_to(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    headers: Iterable[HeaderInput] = (),
    body: bytes = b"",
    to_tag: str | None = None,
) -> Response:
    """Build the response to ``request`` as RFC 3261 §8.2.6 says.

    Via (every one, in order), From, Call-ID and CSeq are copied exactly; To is copied and
    gets ``to_tag`` when the request's To had no tag (never on 100 Trying, §8.2.6.2); a 100
    also copies Timestamp (§8.2.6.1). Raises ``RemoteProtocolError`` when a To tag is to be
    added but the request's To cannot be parsed.
    """
    copied: list[HeaderInput] = []
    for name, value in request.headers:
        key = header_key(name)
        if key in ("via", "from", "call-id", "cseq") or (key == "timestamp" and status == 100):
            copied.append((name, value))
        elif key == "to":
            if to_tag is not None and status != 100:
                to = NameAddr.parse(value, "To")
                if to.tag is None:
                    value = to.with_tag(to_tag).format()
            copied.append((name, value))
    return Response.build(status, reason, headers=(*copied, *headers), body=body)
