"""RFC 4733 telephone-events: the payload, and a receiver that reports each key press once.

Receiver rules (docs/sip.md §4.8):

* An event is identified by (SSRC, RTP timestamp): every packet of one event carries the
  timestamp of its start (§2.5.1.1). A repeated press of the same key has a new timestamp.
* The digit is reported on the first packet seen of a new key, whatever it is: the marker
  bit may be lost or never set, the start packets may be lost (only the end packets arrive),
  and packets may come out of order.
* The end packet is sent three times (§2.5.1.4); its repeats, and every later packet of a
  known key, are absorbed.
* An event longer than 0xFFFF timestamp units is sent in segments (§2.5.1.3): the next
  segment's timestamp is the previous one plus its duration, with no E bit in between. A new
  key that continues the previous event that way is the same key press.
* A payload shorter than 4 bytes, or an event code above 16, is malformed (§2.3):
  ``RemoteProtocolError``; the caller counts and drops it.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from voipalert.media.errors import LocalProtocolError, RemoteProtocolError
from voipalert.media.rtp import ts_diff

DTMF_CHARS: Final = "0123456789*#ABCD"
FLASH_EVENT: Final = 16
MAX_EVENT: Final = 16
MAX_DURATION: Final = 0xFFFF
PAYLOAD_BYTES: Final = 4
_PAYLOAD: Final = struct.Struct("!BBH")


def event_code(char: str) -> int:
    """'0'-'9', '*', '#', 'A'-'D' → event code 0-15 (RFC 4733 §3.2)."""
    index = DTMF_CHARS.find(char.upper()) if len(char) == 1 else -1
    if index < 0:
        raise LocalProtocolError(f"{char!r} is not a DTMF key")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 payload block."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def char(self) -> str | None:
        """The key for DTMF events 0-15; ``None`` for flash."""
        return DTMF_CHARS[self.event] if self.event < len(DTMF_CHARS) else None

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < PAYLOAD_BYTES:
            raise RemoteProtocolError(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        if event > MAX_EVENT:
            raise RemoteProtocolError(f"telephone-event code {event} is not a DTMF event")
        # Bit 6 (R) is reserved: ignored on receipt (§2.3).
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= MAX_EVENT:
            raise LocalProtocolError(f"event code {self.event} out of range 0-16")
        if not 0 <= self.volume <= 0x3F or not 0 <= self.duration <= MAX_DURATION:
            raise LocalProtocolError("volume is 6 bits and duration 16 bits")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class EventDigit:
    """A key press reported by the RFC 4733 receiver."""

    char: str
    ssrc: int
    timestamp: int


@dataclass(slots=True)
class _Seen:
    event: int
    longest: int
    ended: bool


class EventReceiver:
    """Reports each key press of an RFC 4733 stream once. Sans-IO: feed it packets."""

    def __init__(self, *, memory: int = 64) -> None:
        self._seen: OrderedDict[tuple[int, int], _Seen] = OrderedDict()
        self._latest: dict[int, int] = {}  # SSRC → timestamp of its newest event
        self._memory = memory

    def receive(self, ssrc: int, timestamp: int, payload: bytes) -> EventDigit | None:
        """One telephone-event packet in; the digit if it starts a new key press."""
        event = TelephoneEvent.parse(payload)
        key = (ssrc, timestamp)
        seen = self._seen.get(key)
        if seen is not None:
            seen.longest = max(seen.longest, event.duration)
            seen.ended = seen.ended or event.end
            return None
        continues = self._continues(ssrc, timestamp, event.event)
        self._seen[key] = _Seen(event.event, event.duration, event.end)
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        latest = self._latest.get(ssrc)
        if latest is None or ts_diff(timestamp, latest) > 0:
            self._latest[ssrc] = timestamp
        if continues or event.char is None:
            return None
        return EventDigit(event.char, ssrc, timestamp)

    def forget(self, ssrc: int) -> None:
        """Drop the state of a source that went away (SSRC change)."""
        self._latest.pop(ssrc, None)
        for key in [k for k in self._seen if k[0] == ssrc]:
            del self._seen[key]

    def _continues(self, ssrc: int, timestamp: int, event: int) -> bool:
        latest = self._latest.get(ssrc)
        if latest is None:
            return False
        previous = self._seen.get((ssrc, latest))
        if previous is None or previous.event != event:
            return False
        gap = ts_diff(timestamp, latest)
        # §2.5.1.3: a new segment starts where the previous one ends. A real new press
        # always starts later than the last duration we saw, so equality is a continuation.
        return gap == MAX_DURATION or (not previous.ended and gap == previous.longest)


@dataclass(frozen=True, slots=True)
class EventBlock:
    """What the next packet of an outgoing event says."""

    first: bool
    end: bool
    duration: int


class EventSender:
    """The packets of one outgoing key press, one per ptime slot (RFC 4733 §2.5.1).

    The first packet carries the marker bit; the duration grows by one slot per packet
    (counting slots skipped after a stall, since it measures time); after ``slots`` slots
    the end packet goes out three times with the final duration (§2.5.1.4). The caller
    sends every packet with the RTP timestamp of the first slot.
    """

    END_REPEATS: Final = 3

    def __init__(self, code: int, slots: int) -> None:
        if not 0 <= code <= MAX_EVENT or slots < 1:
            raise LocalProtocolError("event code 0-16 and at least one slot")
        self.code = code
        self.slots = slots
        self.start_ts: int | None = None
        self._elapsed = 0
        self._ends = 0

    @property
    def done(self) -> bool:
        return self._ends >= self.END_REPEATS

    def next_block(self, skipped: int, samples_per_slot: int) -> EventBlock:
        first = self._elapsed == 0
        self._elapsed += 1 + (0 if first else skipped)
        if self._elapsed < self.slots:
            return EventBlock(first, False, min(MAX_DURATION, self._elapsed * samples_per_slot))
        self._ends += 1
        return EventBlock(first, True, min(MAX_DURATION, self.slots * samples_per_slot))
