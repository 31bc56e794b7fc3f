"""The messages between the event loop and an analysis worker (sans-IO; docs/rx-workers.md).

Loop to worker: one message holds records of many calls, each a fixed header then its body:

* ``OPEN``: a call's analysis starts (its ``AnalysisSpec``, pickled: the loop is the
  worker's only peer, and it trusts the loop);
* ``CLOSE``: the call ended, its state goes;
* ``BEEPS``: the beep detector on (1) or off (0);
* ``SENT``: a slot we sent (slot number, when it left, the G.711 payload or none);
* ``HEARD``: a received frame (SSRC, RTP timestamp, when it arrived, its G.711 bytes as
  they came: the worker decodes them, in the call's codec from ``OPEN``; half the bytes of
  the samples, and no decoding on the loop).

Worker to loop: events, 22 bytes each (kind, call, a code, an integer and a number). The loop checks
what it reads all the same (a bug in the worker must not take the loop down).
"""

from __future__ import annotations

import enum
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from voipalert.media.rx_analysis import (
    AnalysisEvent,
    AnalysisSpec,
    BeepHeard,
    EchoSettled,
    KeyHeard,
)


class Kind(enum.IntEnum):
    OPEN = 1
    CLOSE = 2
    BEEPS = 3
    SENT = 4
    HEARD = 5


_HEAD: Final = struct.Struct("<BIH")  # kind, call, body length
_SENT: Final = struct.Struct("<qd")  # slot, left_at (payload follows)
_HEARD: Final = struct.Struct("<IId")  # ssrc, timestamp, arrived (G.711 bytes follow)
_EVENT: Final = struct.Struct("<BIBqd")  # kind, call, code, integer, number
EVENT_SIZE: Final = _EVENT.size
MAX_BODY: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class Opened:
    call: int
    spec: AnalysisSpec


@dataclass(frozen=True, slots=True)
class Closed:
    call: int


@dataclass(frozen=True, slots=True)
class BeepsSwitched:
    call: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class Sent:
    call: int
    slot: int
    left_at: float
    payload: bytes | None


@dataclass(frozen=True, slots=True)
class Heard:
    call: int
    ssrc: int
    timestamp: int
    arrived: float
    payload: bytes


Record = Opened | Closed | BeepsSwitched | Sent | Heard


def _record(kind: Kind, call: int, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"a {kind.name} record of {len(body)} bytes is too long")
    return _HEAD.pack(kind, call, len(body)) + body


def open_record(call: int, spec: AnalysisSpec) -> bytes:
    return _record(Kind.OPEN, call, pickle.dumps(spec))


def close_record(call: int) -> bytes:
    return _record(Kind.CLOSE, call, b"")


def beeps_record(call: int, enabled: bool) -> bytes:
    return _record(Kind.BEEPS, call, b"\x01" if enabled else b"\x00")


def sent_record(call: int, slot: int, left_at: float, payload: bytes | None) -> bytes:
    return _record(Kind.SENT, call, _SENT.pack(slot, left_at) + (payload or b""))


def heard_record(call: int, ssrc: int, timestamp: int, arrived: float, payload: bytes) -> bytes:
    return _record(Kind.HEARD, call, _HEARD.pack(ssrc, timestamp, arrived) + payload)


def decode_records(data: bytes) -> Iterator[Record]:
    """The records of one message; ``ValueError`` at the first malformed one."""
    at, end = 0, len(data)
    view = memoryview(data)
    while at < end:
        if end - at < _HEAD.size:
            raise ValueError(f"a record header cut short at byte {at}")
        kind, call, size = _HEAD.unpack_from(data, at)
        at += _HEAD.size
        if at + size > end:
            raise ValueError(f"a record of {size} bytes at byte {at} runs past the message")
        body = view[at : at + size]
        at += size
        yield _decode(kind, call, body)


def _decode(kind: int, call: int, body: memoryview) -> Record:
    if kind == Kind.SENT and len(body) >= _SENT.size:
        slot, left_at = _SENT.unpack_from(body)
        payload = bytes(body[_SENT.size :])
        return Sent(call, slot, left_at, payload or None)
    if kind == Kind.HEARD and len(body) > _HEARD.size:
        ssrc, timestamp, arrived = _HEARD.unpack_from(body)
        return Heard(call, ssrc, timestamp, arrived, bytes(body[_HEARD.size :]))
    if kind == Kind.OPEN:
        spec = pickle.loads(body)
        if not isinstance(spec, AnalysisSpec):
            raise ValueError(f"an OPEN record holds a {type(spec).__name__}")
        return Opened(call, spec)
    if kind == Kind.CLOSE and not body:
        return Closed(call)
    if kind == Kind.BEEPS and len(body) == 1:
        return BeepsSwitched(call, body[0] != 0)
    raise ValueError(f"a malformed record (kind {kind}, {len(body)} bytes)")


# ------------------------------------------------------------------ events back


class _EventKind(enum.IntEnum):
    KEY = 1
    BEEP = 2
    ECHO = 3


def encode_event(call: int, event: AnalysisEvent) -> bytes:
    if isinstance(event, KeyHeard):
        return _EVENT.pack(_EventKind.KEY, call, ord(event.char), 0, 0.0)
    if isinstance(event, BeepHeard):
        return _EVENT.pack(_EventKind.BEEP, call, 0, event.start, event.hz)
    delay = event.delay_samples
    return _EVENT.pack(_EventKind.ECHO, call, delay is not None, delay or 0, 0.0)


def decode_events(data: bytes) -> Iterator[tuple[int, AnalysisEvent]]:
    """The events of one message; ``ValueError`` for a malformed one."""
    if len(data) % EVENT_SIZE:
        raise ValueError(f"an event message of {len(data)} bytes")
    for kind, call, code, integer, number in _EVENT.iter_unpack(data):
        if kind == _EventKind.KEY and 0 < code < 128:
            yield call, KeyHeard(chr(code))
        elif kind == _EventKind.BEEP:
            yield call, BeepHeard(number, integer)
        elif kind == _EventKind.ECHO:
            yield call, EchoSettled(integer if code else None)
        else:
            raise ValueError(f"a malformed event (kind {kind}, code {code})")
