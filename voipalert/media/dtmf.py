"""One stream of key presses from three sources: RFC 4733, in-band tones and SIP INFO.

A PBX may send the same press both as an RFC 4733 event and as tones in the audio, or as
SIP INFO and tones; the collector reports it once. A report from one source absorbs at most
one report of the same key from each *other* source within ``window_s`` seconds; reports
from the same source are always distinct presses (each source already de-duplicates itself).
Time is an argument: the caller passes when each report arrived.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from voipalert.media.errors import LocalProtocolError
from voipalert.media.rfc4733 import DTMF_CHARS

DEFAULT_WINDOW_S: Final = 0.5


class DtmfSource(enum.Enum):
    RFC4733 = "rfc4733"
    INBAND = "inband"
    SIP_INFO = "sip-info"


@dataclass(frozen=True, slots=True)
class Digit:
    """A key press, reported once, with the source that reported it first."""

    char: str
    at: float
    source: DtmfSource


@dataclass(slots=True)
class _Press:
    digit: Digit
    sources: set[DtmfSource] = field(default_factory=set)


class DtmfCollector:
    """Merges the three DTMF paths of one call into one de-duplicated stream."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_S) -> None:
        if window_s < 0:
            raise LocalProtocolError("the de-duplication window cannot be negative")
        self._window = window_s
        self._recent: deque[_Press] = deque()
        self.duplicates = 0

    def add(self, char: str, source: DtmfSource, at: float) -> Digit | None:
        """Report a key from ``source`` at time ``at``; the new ``Digit`` or ``None``."""
        char = char.upper()
        if len(char) != 1 or char not in DTMF_CHARS:
            raise LocalProtocolError(f"{char!r} is not a DTMF key")
        while self._recent and at - self._recent[0].digit.at > self._window:
            self._recent.popleft()
        match = self._match(char, source, at)
        if match is not None:
            match.sources.add(source)
            self.duplicates += 1
            return None
        digit = Digit(char, at, source)
        self._recent.append(_Press(digit, {source}))
        return digit

    def _match(self, char: str, source: DtmfSource, at: float) -> _Press | None:
        # Oldest first: each source reports its presses in order, so the n-th report of a
        # key from one path pairs with the n-th from another.
        for press in self._recent:
            if press.digit.char == char and source not in press.sources:
                if abs(at - press.digit.at) <= self._window:
                    return press
        return None
