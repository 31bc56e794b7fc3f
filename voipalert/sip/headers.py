"""An ordered, case-insensitive, immutable multi-header store (RFC 3261 §7.3).

Public API:

* ``Headers(fields=())`` — ``fields`` is an iterable of ``(name, value)``; a value may be a
  ``str`` or any object with ``format() -> str`` (``Via``, ``NameAddr``, ``CSeq``,
  ``SipUri``...). Names keep the spelling they were given or received with; lookups ignore
  case and understand the compact forms (``i m e l c f s k t v o u`` ...), so
  ``headers.get("Call-ID")`` finds an ``i:`` line.
* Reading: ``get(name)`` (first field value), ``get_all(name)`` (every field line),
  ``values(name)`` (every comma-separated element of every line, not splitting inside
  quoted strings or ``<...>`` — use it only for list-valued headers), ``count(name)``,
  ``name in headers``, iteration over ``(name, value)`` pairs, ``len()``.
* Edits return a new ``Headers``: ``appended``, ``prepended`` (before the first field of
  that name, or at the top), ``replaced`` (one value at the position of the first, the
  others removed), ``removed``.
* ``header_key(name)`` — the canonical lower-case full name used for comparisons.
* ``check()`` raises ``LocalProtocolError`` for a name that is not a token or a value with a
  control character (CR, LF, NUL...): what ``Request.build`` and every ``serialize()`` run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Protocol

from voipalert.sip.grammar import check_text, check_token, split_list

# RFC 3261 §7.3.3 and the registry of compact forms (RFC 3265, 3515, 3892, 4028, 4474, 3841).
COMPACT_FORMS: Final = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}


class Formattable(Protocol):
    def format(self) -> str: ...


HeaderInput = tuple[str, str | Formattable]


def header_key(name: str) -> str:
    """Canonical comparison key: lower-case, compact form expanded."""
    lowered = name.lower()
    return COMPACT_FORMS.get(lowered, lowered)


def _as_text(value: str | Formattable) -> str:
    return value if isinstance(value, str) else value.format()


class Headers:
    """An immutable sequence of ``(name, value)`` header fields."""

    __slots__ = ("_fields", "_keys")

    def __init__(self, fields: Iterable[HeaderInput] = ()) -> None:
        self._fields: tuple[tuple[str, str], ...] = tuple(
            (name, _as_text(value)) for name, value in fields
        )
        self._keys = tuple(header_key(name) for name, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.count(name) > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return self._fields

    def get(self, name: str) -> str | None:
        key = header_key(name)
        for index, field_key in enumerate(self._keys):
            if field_key == key:
                return self._fields[index][1]
        return None

    def get_all(self, name: str) -> tuple[str, ...]:
        key = header_key(name)
        return tuple(
            field[1]
            for field, field_key in zip(self._fields, self._keys, strict=True)
            if field_key == key
        )

    def values(self, name: str) -> tuple[str, ...]:
        """Every element of a list-valued header, across all its lines, in order."""
        return tuple(item for line in self.get_all(name) for item in split_list(line, name))

    def count(self, name: str) -> int:
        return self._keys.count(header_key(name))

    def appended(self, name: str, value: str | Formattable) -> Headers:
        return Headers((*self._fields, (name, _as_text(value))))

    def prepended(self, name: str, value: str | Formattable) -> Headers:
        """Insert before the first field called ``name`` (a new top Via), else at the top."""
        key = header_key(name)
        index = self._keys.index(key) if key in self._keys else 0
        new = (name, _as_text(value))
        return Headers((*self._fields[:index], new, *self._fields[index:]))

    def replaced(self, name: str, value: str | Formattable) -> Headers:
        """One field ``name: value`` where the first one was (appended if none was)."""
        key = header_key(name)
        out: list[tuple[str, str]] = []
        done = False
        for field in self._fields:
            if header_key(field[0]) != key:
                out.append(field)
            elif not done:
                out.append((field[0], _as_text(value)))
                done = True
        if not done:
            out.append((name, _as_text(value)))
        return Headers(out)

    def removed(self, name: str) -> Headers:
        key = header_key(name)
        return Headers(field for field in self._fields if header_key(field[0]) != key)

    def check(self) -> None:
        """Raise LocalProtocolError unless every field can go on the wire as it is."""
        for name, value in self._fields:
            check_token(name, "header name")
            check_text(value, f"header {name}")
