"""SIP, SIPS and tel URIs, and any other absolute URI (RFC 3261 §19.1, §25.1; RFC 3966).

Public API:

* ``SipUri(host=..., user=None, password=None, port=None, scheme="sip", params=(),
  headers=())`` — frozen; components are kept in their *wire* form (``%HH`` escapes
  preserved), so a parsed URI formats back byte for byte. ``escape_user(text)`` escapes
  free text for the user part; ``unescaped_user``, ``get_param`` and ``get_header`` undo the
  escapes once. ``SipUri.parse(text)``, ``uri.format()`` (also ``str(uri)``),
  ``with_param``/``without_param``, ``transport``, ``host_port``, ``matches(other)``
  (RFC 3261 §19.1.4 comparison). A ``tel:`` URI is a ``SipUri`` with ``scheme="tel"``,
  the number in ``user`` and an empty ``host``.
* ``AbsoluteUri(scheme, opaque)`` — any other scheme (``isbn:…``, ``http://…``); SIP allows
  them in the Request-URI and in name-addr headers (RFC 4475 §3.3.2-3.3.4).
* ``Uri`` = ``SipUri | AbsoluteUri``; ``parse_uri(text) -> Uri``.

Parsing raises ``RemoteProtocolError``; ``format()`` raises ``LocalProtocolError`` for any
component holding a character its grammar does not allow — CR, LF and NUL included.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import quote as percent_quote

from voipalert.sip.errors import LocalProtocolError, RemoteProtocolError
from voipalert.sip.grammar import (
    ALPHANUM,
    UNRESERVED,
    check_component,
    check_escapes,
    check_text,
    unescape,
)

SIP_SCHEMES: Final = frozenset({"sip", "sips"})
USER_CHARS: Final = UNRESERVED | frozenset("&=+$,;?/")
PASSWORD_CHARS: Final = UNRESERVED | frozenset("&=+$,")
PARAM_CHARS: Final = UNRESERVED | frozenset("[]/:&+$")
HEADER_CHARS: Final = UNRESERVED | frozenset("[]/?:+$")
TEL_CHARS: Final = frozenset(string.hexdigits + "*#+-.()")
URIC_CHARS: Final = UNRESERVED | frozenset(";/?:@&=+$,[]")
SCHEME_CHARS: Final = ALPHANUM | frozenset("+-.")
HOSTNAME_CHARS: Final = ALPHANUM | frozenset("-._")
MAX_PORT: Final = 65535
# Parameters whose presence in only one URI makes two URIs differ (RFC 3261 §19.1.4).
_SIGNIFICANT_PARAMS: Final = ("user", "ttl", "method", "maddr", "transport")

UriParams = tuple[tuple[str, str | None], ...]


def escape_user(text: str) -> str:
    """Escape free text so it can be the user part of a SIP URI."""
    check_text(text, "URI user")
    return percent_quote(text, safe="".join(sorted(USER_CHARS - {"%"})))


def parse_host(text: str, what: str) -> str:
    """Validate host = hostname / IPv4address / IPv6reference; returns it unchanged."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise RemoteProtocolError(f"{what}: unterminated IPv6 reference {text!r}")
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise RemoteProtocolError(f"{what}: bad IPv6 address {text!r}") from None
        if address.scope_id is not None:
            # SIP's IPv6reference has no zone; ipaddress would accept any text after '%'.
            raise RemoteProtocolError(f"{what}: IPv6 zone in {text!r}")
        return text
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if not text or any(not label or set(label) - HOSTNAME_CHARS for label in labels):
        raise RemoteProtocolError(f"{what}: bad host {text!r}")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise RemoteProtocolError(f"{what}: bad IPv4 address {text!r}") from None
    return text


def parse_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text.lstrip("0")) > 5:
        raise RemoteProtocolError(f"{what}: bad port {text!r}")
    if int(text) > MAX_PORT:
        raise RemoteProtocolError(f"{what}: bad port {text!r}")
    return int(text)


def _split_host_port(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[: end + 1], text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise RemoteProtocolError(f"{what}: bad host and port {text!r}")
    else:
        host, _, port_text = text.partition(":")
        rest = f":{port_text}" if ":" in text else ""
    port = parse_port(rest[1:], what) if rest else None
    return parse_host(host, what), port


def _parse_params(text: str, what: str) -> UriParams:
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name or (eq and not value):
            raise RemoteProtocolError(f"{what}: empty URI parameter in {text!r}")
        check_escapes(name, PARAM_CHARS, what)
        check_escapes(value, PARAM_CHARS, what)
        params.append((name, value if eq else None))
    return tuple(params)


def _parse_headers(text: str, what: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq:
            raise RemoteProtocolError(f"{what}: bad URI header {item!r}")
        check_escapes(name, HEADER_CHARS, what)
        check_escapes(value, HEADER_CHARS, what)
        headers.append((name, value))
    return tuple(headers)


def _find_param(params: UriParams, name: str) -> tuple[str, str | None] | None:
    wanted = name.lower()
    for pair in params:
        if unescape(pair[0]).lower() == wanted:
            return pair
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI, components in wire (escaped) form."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: UriParams = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str, what: str = "URI") -> SipUri:
        uri = parse_uri(text, what)
        if not isinstance(uri, SipUri):
            raise RemoteProtocolError(f"{what}: {uri.scheme}: is not a SIP or tel URI")
        return uri

    def format(self) -> str:
        scheme = self.scheme.lower()
        params = "".join(_format_param(name, value) for name, value in self.params)
        if scheme == "tel":
            check_component(self.user or "", TEL_CHARS, "tel URI number")
            if not self.user or self.host or self.port is not None or self.headers:
                raise LocalProtocolError("a tel URI has a number and parameters only")
            return f"tel:{self.user}{params}"
        if scheme not in SIP_SCHEMES:
            raise LocalProtocolError(f"URI scheme {self.scheme!r} is not sip, sips or tel")
        check_text(self.host, "URI host")
        try:
            parse_host(self.host, "URI host")
        except RemoteProtocolError as exc:
            raise LocalProtocolError(str(exc)) from None
        port = ""
        if self.port is not None:
            if not 0 < self.port <= MAX_PORT:
                raise LocalProtocolError(f"URI port {self.port} out of range")
            port = f":{self.port}"
        headers = "&".join(_format_header(name, value) for name, value in self.headers)
        query = f"?{headers}" if headers else ""
        return f"{scheme}:{self._userinfo()}{self.host}{port}{params}{query}"

    def _userinfo(self) -> str:
        if self.user is None:
            if self.password is not None:
                raise LocalProtocolError("URI password without a user")
            return ""
        check_component(self.user, USER_CHARS, "URI user")
        if not self.user:
            raise LocalProtocolError("URI user is empty")
        if self.password is None:
            return f"{self.user}@"
        check_component(self.password, PASSWORD_CHARS, "URI password")
        return f"{self.user}:{self.password}@"

    def __str__(self) -> str:
        return self.format()

    @property
    def unescaped_user(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        value = self.get_param("transport")
        return None if value is None else value.lower()

    def has_param(self, name: str) -> bool:
        return _find_param(self.params, name) is not None

    def get_param(self, name: str) -> str | None:
        """Unescaped value of URI parameter ``name`` (names compare unescaped and without
        case); None when absent or a flag such as ``lr``."""
        pair = _find_param(self.params, name)
        return None if pair is None or pair[1] is None else unescape(pair[1])

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """Set a URI parameter (replacing one of the same name); the value is escaped."""
        check_text(name, "URI parameter name")
        raw = None if value is None else _escape_param(value)
        found = _find_param(self.params, name)
        if found is None:
            return replace(self, params=(*self.params, (_escape_param(name), raw)))
        params = tuple((found[0], raw) if pair is found else pair for pair in self.params)
        return replace(self, params=params)

    def without_param(self, name: str) -> SipUri:
        found = _find_param(self.params, name)
        return replace(self, params=tuple(pair for pair in self.params if pair is not found))

    def get_header(self, name: str) -> str | None:
        """Unescaped value of the URI header ``name`` (``?Route=...``)."""
        wanted = name.lower()
        for key, value in self.headers:
            if unescape(key).lower() == wanted:
                return unescape(value)
        return None

    def matches(self, other: SipUri | AbsoluteUri) -> bool:
        """URI equality as RFC 3261 §19.1.4 defines it (escapes undone, host without
        case, a default port is not equal to no port, significant parameters)."""
        if not isinstance(other, SipUri) or self.scheme.lower() != other.scheme.lower():
            return False
        if (self.unescaped_user, self.port) != (other.unescaped_user, other.port):
            return False
        if self.password != other.password or self.host.lower() != other.host.lower():
            return False
        names = {unescape(n).lower() for n, _ in self.params} | {
            unescape(n).lower() for n, _ in other.params
        }
        for name in names:
            mine, theirs = self.has_param(name), other.has_param(name)
            if mine != theirs and name in _SIGNIFICANT_PARAMS:
                return False
            if (
                mine
                and theirs
                and (self.get_param(name) or "").lower() != (other.get_param(name) or "").lower()
            ):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of a scheme SIP does not interpret (RFC 3261 §25.1 absoluteURI)."""

    scheme: str
    opaque: str

    def format(self) -> str:
        check_component(self.scheme, SCHEME_CHARS, "URI scheme")
        check_component(self.opaque, URIC_CHARS, "URI")
        if not self.opaque or not self.scheme[:1].isalpha():
            raise LocalProtocolError(f"bad absolute URI {self.scheme}:{self.opaque}")
        return f"{self.scheme}:{self.opaque}"

    def __str__(self) -> str:
        return self.format()

    def matches(self, other: SipUri | AbsoluteUri) -> bool:
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme.lower() == other.scheme.lower()
            and unescape(self.opaque) == unescape(other.opaque)
        )


Uri = SipUri | AbsoluteUri


def parse_uri(text: str, what: str = "URI") -> Uri:
    """Parse a URI in its addr-spec form (no surrounding ``<>``)."""
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or set(scheme) - SCHEME_CHARS:
        raise RemoteProtocolError(f"{what}: {text!r} is not a URI (no scheme)")
    lowered = scheme.lower()
    if lowered in SIP_SCHEMES:
        return _parse_sip(lowered, rest, what)
    if lowered == "tel":
        number, semi, params = rest.partition(";")
        if not number:
            raise RemoteProtocolError(f"{what}: tel URI without a number")
        check_escapes(number, TEL_CHARS, what)
        parsed = _parse_params(params, what) if semi else ()
        return SipUri(scheme="tel", user=number, host="", params=parsed)
    if not rest:
        raise RemoteProtocolError(f"{what}: empty {scheme}: URI")
    check_escapes(rest, URIC_CHARS, what)
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str, what: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.partition("@")
        user, colon, password_text = userinfo.partition(":")
        password = password_text if colon else None
        if not user:
            raise RemoteProtocolError(f"{what}: empty user part")
        check_escapes(user, USER_CHARS, what)
        if password is not None:
            check_escapes(password, PASSWORD_CHARS, what)
    rest, question, header_text = rest.partition("?")
    host_port, semi, param_text = rest.partition(";")
    host, port = _split_host_port(host_port, what)
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_parse_params(param_text, what) if semi else (),
        headers=_parse_headers(header_text, what) if question else (),
    )


def _escape_param(text: str) -> str:
    return percent_quote(text, safe="".join(sorted(PARAM_CHARS - {"%"})))


def _format_param(name: str, value: str | None) -> str:
    check_component(name, PARAM_CHARS, "URI parameter name")
    if not name:
        raise LocalProtocolError("empty URI parameter name")
    if value is None:
        return f";{name}"
    check_component(value, PARAM_CHARS, f"URI parameter {name}")
    if not value:
        raise LocalProtocolError(f"empty value for URI parameter {name}")
    return f";{name}={value}"


def _format_header(name: str, value: str) -> str:
    check_component(name, HEADER_CHARS, "URI header name")
    check_component(value, HEADER_CHARS, f"URI header {name}")
    if not name:
        raise LocalProtocolError("empty URI header name")
    return f"{name}={value}"
