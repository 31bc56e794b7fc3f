"""Lexical pieces of the SIP grammar (RFC 3261 §25.1) shared by the header parsers.

Rules of this module:

* Parsing works on one unfolded header value (a ``str``; folding was already replaced by a
  single SP) and raises ``RemoteProtocolError`` naming the header and the column.
* Formatting raises ``LocalProtocolError`` for anything that would not survive the trip
  onto the wire: control characters (everything below 0x20 except HTAB, and DEL) are
  refused everywhere, so text from an alert can never start a new header line.
* Parameters are kept as ``(name, raw_value)`` pairs in wire order; ``raw_value`` is
  ``None`` for a flag (``;lr``) and keeps its quotes when it was a quoted string, so a
  parsed value formats back to the same text.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from itertools import pairwise
from typing import Final
from urllib.parse import unquote

from voipalert.sip.errors import LocalProtocolError, RemoteProtocolError

Params = tuple[tuple[str, str | None], ...]

ALPHANUM: Final = frozenset(string.ascii_letters + string.digits)
MARK: Final = frozenset("-_.!~*'()")
UNRESERVED: Final = ALPHANUM | MARK
TOKEN_CHARS: Final = ALPHANUM | frozenset("-.!%*_+`'~")
# word (RFC 3261 §25.1) is what Call-ID is made of.
WORD_CHARS: Final = TOKEN_CHARS | frozenset('()<>:\\"/[]?{}')
# gen-value = token / host / quoted-string; host adds the IPv6 reference characters.
GEN_VALUE_CHARS: Final = TOKEN_CHARS | frozenset("[]:")
WSP: Final = frozenset(" \t")
HEX_DIGITS: Final = frozenset(string.hexdigits)
MAX_DELTA_SECONDS: Final = 2**32 - 1


def is_token(text: str) -> bool:
    return bool(text) and all(ch in TOKEN_CHARS for ch in text)


CONTROL_CHARS: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def is_control(ch: str) -> bool:
    """True for the characters no header value may carry unescaped (CR, LF, NUL, ...)."""
    return (ch < " " and ch != "\t") or ch == "\x7f"


def check_text(text: str, what: str) -> None:
    """Refuse control characters (except HTAB) in text we are about to put on the wire."""
    found = CONTROL_CHARS.search(text)
    if found is not None:
        raise LocalProtocolError(
            f"{what} contains control character {found.group()!r} at index {found.start()}; "
            "refusing to serialize it (it could inject a header)"
        )


def check_token(text: str, what: str) -> None:
    if not is_token(text):
        raise LocalProtocolError(f"{what} {text!r} is not a SIP token")


def quote(text: str, what: str) -> str:
    """Format ``text`` as a quoted-string, escaping ``"`` and ``\\``."""
    check_text(text, what)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def unescape(text: str) -> str:
    """Undo %HH escapes once (RFC 3261 §19.1.2; never recursively, RFC 4475 §3.1.1.3)."""
    return unquote(text, errors="replace")


def find_bad_char(text: str, allowed: frozenset[str]) -> str | None:
    """Describe the first character of ``text`` that is neither in ``allowed`` nor part of
    a %HH escape; None when the text is clean."""
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == "%":
            pair = text[index + 1 : index + 3]
            if len(pair) != 2 or not all(c in HEX_DIGITS for c in pair):
                return f"bad %-escape at index {index}"
            index += 3
            continue
        if ch not in allowed:
            return f"character {ch!r} at index {index} is not allowed"
        index += 1
    return None


def check_escapes(text: str, allowed: frozenset[str], what: str) -> None:
    """Raise RemoteProtocolError unless ``text`` is made of ``allowed`` chars and %HH."""
    problem = find_bad_char(text, allowed)
    if problem is not None:
        raise RemoteProtocolError(f"{what}: {problem} in {text!r}")


def check_component(text: str, allowed: frozenset[str], what: str) -> None:
    """The serializer's twin of ``check_escapes``: raise LocalProtocolError instead."""
    check_text(text, what)
    problem = find_bad_char(text, allowed)
    if problem is not None:
        raise LocalProtocolError(f"{what}: {problem} in {text!r}")


def parse_uint(text: str, what: str, maximum: int) -> int:
    """1*DIGIT with surrounding whitespace allowed, at most ``maximum``."""
    text = text.strip(" \t")
    if not text.isascii() or not text.isdigit():
        raise RemoteProtocolError(f"{what}: {text[:40]!r} is not a non-negative integer")
    # Leading zeros are allowed ("0068", RFC 4475 §3.1.1.1); the length check keeps int()
    # away from huge digit strings (Python refuses more than 4300 digits).
    if len(text.lstrip("0")) > len(str(maximum)) or int(text) > maximum:
        raise RemoteProtocolError(f"{what}: {text[:40]} is larger than {maximum}")
    return int(text)


def parse_delta_seconds(text: str, what: str) -> int:
    """delta-seconds: 1*DIGIT, at most 2**32-1 (RFC 3261 §20.19, §20.33)."""
    return parse_uint(text, what, MAX_DELTA_SECONDS)


class Scanner:
    """A cursor over one unfolded header value. Errors name the header and the column."""

    __slots__ = ("pos", "text", "what")

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.pos = 0

    def error(self, problem: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"{self.what}: {problem} at column {self.pos} in {self.text!r}")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in WSP:
            self.pos += 1

    def take_while(self, chars: frozenset[str]) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def token(self, what: str) -> str:
        value = self.take_while(TOKEN_CHARS)
        if not value:
            raise self.error(f"expected {what}")
        return value

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}")
        self.pos += 1

    def quoted_string(self) -> str:
        """Read a quoted-string at the cursor; returns its unescaped content."""
        self.expect('"')
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise self.error("unterminated quoted string")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                escaped = self.peek()
                # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                if not escaped or escaped in "\r\n" or escaped > "\x7f":
                    raise self.error("bad quoted-pair")
                out.append(escaped)
                self.pos += 1
            elif is_control(ch):
                raise self.error(f"control character {ch!r} in quoted string")
            else:
                out.append(ch)

    def raw_quoted_string(self) -> str:
        """Like ``quoted_string`` but returns the text as written, quotes included."""
        start = self.pos
        self.quoted_string()
        return self.text[start : self.pos]

    def params(self) -> Params:
        """Read ``*( SEMI generic-param )``; stops before anything else (``,`` or end)."""
        params: list[tuple[str, str | None]] = []
        while True:
            self.skip_ws()
            if self.peek() != ";":
                return tuple(params)
            self.pos += 1
            self.skip_ws()
            name = self.token("parameter name")
            self.skip_ws()
            value: str | None = None
            if self.peek() == "=":
                self.pos += 1
                self.skip_ws()
                if self.peek() == '"':
                    value = self.raw_quoted_string()
                else:
                    value = self.take_while(GEN_VALUE_CHARS)
                    if not value:
                        raise self.error(f"empty value for parameter {name!r}")
            params.append((name, value))


def _top_level_commas(value: str, what: str) -> list[int]:
    """Indexes of the commas that separate list elements (not in quotes or ``<...>``)."""
    commas: list[int] = []
    in_quotes = in_angle = escaped = False
    for index, ch in enumerate(value):
        if escaped:
            escaped = False
        elif in_quotes:
            escaped = ch == "\\"
            in_quotes = ch != '"'
        elif ch == '"':
            in_quotes = True
        elif ch in "<>":
            in_angle = ch == "<"
        elif ch == "," and not in_angle:
            commas.append(index)
    if in_quotes:
        raise RemoteProtocolError(f"{what}: unterminated quoted string in {value!r}")
    return commas


def split_list(value: str, what: str) -> tuple[str, ...]:
    """Split a comma-separated header value, not inside quoted strings or ``<...>``."""
    bounds = [-1, *_top_level_commas(value, what), len(value)]
    items = tuple(value[a + 1 : b].strip(" \t") for a, b in pairwise(bounds))
    if items == ("",):
        return ()
    if any(not item for item in items):
        raise RemoteProtocolError(f"{what}: empty element in list {value!r}")
    return items


def unquote_value(raw: str | None) -> str | None:
    if raw is None or not raw.startswith('"'):
        return raw
    return Scanner(raw, "parameter").quoted_string()


def find_param(params: Params, name: str) -> tuple[str, str | None] | None:
    wanted = name.lower()
    for pair in params:
        if pair[0].lower() == wanted:
            return pair
    return None


def get_param(params: Params, name: str) -> str | None:
    """The (unquoted) value of parameter ``name``; None when absent or a flag."""
    pair = find_param(params, name)
    return None if pair is None else unquote_value(pair[1])


def with_param(params: Params, name: str, value: str | None) -> Params:
    """Set ``name`` (replacing it in place, or appending). Values that are not a token
    or host are quoted."""
    check_token(name, "parameter name")
    if value is not None and (not value or any(ch not in GEN_VALUE_CHARS for ch in value)):
        value = quote(value, f"parameter {name}")
    wanted = name.lower()
    if any(pair[0].lower() == wanted for pair in params):
        return tuple((name, value) if pair[0].lower() == wanted else pair for pair in params)
    return (*params, (name, value))


def without_param(params: Params, name: str) -> Params:
    wanted = name.lower()
    return tuple(pair for pair in params if pair[0].lower() != wanted)


def format_params(params: Iterable[tuple[str, str | None]], what: str) -> str:
    """``;name=value`` for each parameter, validating what we are about to write."""
    parts: list[str] = []
    for name, value in params:
        check_token(name, f"{what} parameter name")
        if value is None:
            parts.append(f";{name}")
            continue
        check_text(value, f"{what} parameter {name}")
        if value.startswith('"'):
            scanner = Scanner(value, what)
            try:
                scanner.quoted_string()
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"{what} parameter {name}: {exc}") from exc
            if not scanner.at_end():
                raise LocalProtocolError(f"{what} parameter {name}: text after quoted string")
        elif not value or any(ch not in GEN_VALUE_CHARS for ch in value):
            raise LocalProtocolError(f"{what} parameter {name}={value!r} is not a token or host")
        parts.append(f";{name}={value}")
    return "".join(parts)
