"""name-addr / addr-spec values: From, To, Contact, Route, Record-Route (RFC 3261 §20.10).

Public API:

* ``NameAddr(uri, display_name=None, params=())`` — frozen. ``display_name`` is the
  decoded text (quotes and escapes removed); ``params`` are the *header* parameters
  (``tag``, ``expires``, ``q``, ...), distinct from the URI's own parameters.
* ``NameAddr.parse(text, what="address")`` accepts both forms:
  ``"Alice" <sip:a@example.com>;tag=1``, ``Alice <sip:a@...>`` (token display name) and
  ``sip:a@example.com;tag=1`` (addr-spec: everything after the first ``;`` is a header
  parameter, and a URI with ``?headers`` must be in ``<>``, RFC 4475 §3.1.2.13).
* ``format()`` always writes the name-addr form ``"display" <uri>;params``.
* ``tag``, ``expires``, ``get_param``, ``has_param``, ``with_param``, ``with_tag``,
  ``without_param``.

A display name with a control character (CR, LF, NUL, ...) raises ``LocalProtocolError``
on ``format()``: alert text can never break out of the header.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from voipalert.sip.grammar import (
    TOKEN_CHARS,
    WSP,
    Params,
    Scanner,
    find_param,
    format_params,
    get_param,
    parse_delta_seconds,
    quote,
    with_param,
    without_param,
)
from voipalert.sip.uri import Uri, parse_uri

# Characters that end an addr-spec URI: header params start at ';', and whitespace or ','
# cannot be part of it (RFC 3261 §20.10: such URIs must be enclosed in <>).
_ADDR_SPEC_END = frozenset(";, \t")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """An address with an optional display name and header parameters."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str, what: str = "address") -> NameAddr:
        scanner = Scanner(text, what)
        scanner.skip_ws()
        if scanner.peek() == '"':
            display: str | None = scanner.quoted_string()
            scanner.skip_ws()
            uri = _angle_uri(scanner)
        elif _has_angle_form(text, scanner.pos):
            display = _token_display_name(scanner)
            uri = _angle_uri(scanner)
        else:
            display = None
            start = scanner.pos
            while not scanner.at_end() and scanner.peek() not in _ADDR_SPEC_END:
                scanner.pos += 1
            uri_text = text[start : scanner.pos]
            if "?" in uri_text:
                raise scanner.error("a URI with headers must be enclosed in <>")
            uri = parse_uri(uri_text, what)
        params = scanner.params()
        scanner.skip_ws()
        if not scanner.at_end():
            raise scanner.error("unexpected text after address")
        return cls(uri=uri, display_name=display, params=params)

    def format(self) -> str:
        display = ""
        if self.display_name is not None:
            display = quote(self.display_name, "display name") + " "
        return f"{display}<{self.uri.format()}>{format_params(self.params, 'address')}"

    def __str__(self) -> str:
        return self.format()

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    @property
    def expires(self) -> int | None:
        """The ``expires`` header parameter of a Contact (RFC 3261 §20.10)."""
        value = get_param(self.params, "expires")
        return None if value is None else parse_delta_seconds(value, "Contact expires")

    def has_param(self, name: str) -> bool:
        return find_param(self.params, name) is not None

    def get_param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        return replace(self, params=with_param(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        return replace(self, params=without_param(self.params, name))

    def with_tag(self, tag: str) -> NameAddr:
        return self.with_param("tag", tag)


def _has_angle_form(text: str, start: int) -> bool:
    # A ':' before the first '<' means an addr-spec whose parameters contain '<'.
    angle = text.find("<", start)
    return angle >= 0 and ":" not in text[start:angle]


def _token_display_name(scanner: Scanner) -> str | None:
    """display-name = *(token LWS): unquoted names must be tokens (RFC 4475 §3.1.2.15)."""
    end = scanner.text.index("<", scanner.pos)
    words = scanner.text[scanner.pos : end].split()
    for word in words:
        bad = set(word) - TOKEN_CHARS
        if bad:
            raise scanner.error(f"unquoted display name contains {sorted(bad)[0]!r}")
    scanner.pos = end
    return " ".join(words) if words else None


def _angle_uri(scanner: Scanner) -> Uri:
    scanner.expect("<")
    end = scanner.text.find(">", scanner.pos)
    if end < 0:
        raise scanner.error("missing '>'")
    uri_text = scanner.text[scanner.pos : end]
    if not uri_text or uri_text[0] in WSP or uri_text[-1] in WSP:
        # RFC 4475 §3.1.2.14: spaces inside <> are malformed; we reject rather than guess.
        raise scanner.error("whitespace or nothing inside <>")
    uri = parse_uri(uri_text, scanner.what)
    scanner.pos = end + 1
    return uri
