"""Cutting SIP messages out of a TCP/TLS byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1).

Public API:

* ``StreamFramer(max_message_bytes=MAX_MESSAGE_BYTES)`` — like h11's ``ReceiveBuffer``:
  ``feed(data)`` appends bytes; ``next_event()`` returns the next ``Request``/``Response``,
  a ``KeepAlive``, or ``None`` when more bytes are needed. Call it until it returns None
  after every ``feed``.
* ``KeepAlive(ping)`` — ``ping=True`` for a CRLFCRLF ping (answer it with ``PONG``),
  ``ping=False`` for a lone CRLF (the pong to our ``PING``).
* ``broken`` — after a *framing* error (no or bad Content-Length, a header block that does
  not parse, more than ``max_message_bytes`` buffered) every call raises the same
  ``RemoteProtocolError``: the stream cannot be resynchronised, close the connection
  (RFC 4475 §3.3.9). A message that is framed correctly but invalid raises
  ``RemoteProtocolError`` once and the framer goes on with the next message.
* ``is_keepalive(datagram)`` — a UDP datagram made only of CR and LF bytes.

A CRLF that arrives alone at the end of the buffer is reported as a pong at once; if the
second half of a ping arrives later it is reported as another pong (a ping split across two
TCP segments is rare, and a missed ping only costs the peer one keep-alive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.message import Request, Response
from voipalert.sip.parser import MAX_MESSAGE_BYTES, parse_header_block, parse_message

PING: Final = b"\r\n\r\n"
PONG: Final = b"\r\n"
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A keep-alive between messages: ``ping`` wants a ``PONG`` back."""

    ping: bool


def is_keepalive(datagram: bytes) -> bool:
    return bool(datagram) and not datagram.strip(b"\r\n")


class StreamFramer:
    """Framing state for one connection. Pure: bytes in, messages out."""

    __slots__ = ("_buffer", "_error", "_max", "_message_size", "_scanned")

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._error: RemoteProtocolError | None = None
        # Work already done on the message at the head of the buffer, so that a peer that
        # trickles bytes cannot make every feed rescan or reparse it (quadratic CPU).
        self._scanned = 0
        self._message_size: int | None = None

    @property
    def broken(self) -> bool:
        return self._error is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_event(self) -> Request | Response | KeepAlive | None:
        if self._error is not None:
            raise self._error
        try:
            keepalive = self._keepalive()
            if keepalive is not None or self._buffer[:1] == b"\r":
                return keepalive
            end = self._message_end()
        except RemoteProtocolError as exc:
            self._error = RemoteProtocolError(f"stream framing: {exc}")
            raise self._error from None
        if end is None:
            return None
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._scanned, self._message_size = 0, None
        return parse_message(data)

    def _keepalive(self) -> KeepAlive | None:
        """Consume a keep-alive at the head of the buffer; None when there is none (or
        only the start of one, which leaves a CR at the head)."""
        buffer = self._buffer
        while buffer[:1] == b"\n":
            # A bare LF between messages: skip it (RFC 3261 §7.5 ignores CRLF there).
            del buffer[:1]
        if buffer.startswith(PING):
            del buffer[:4]
            return KeepAlive(ping=True)
        if buffer.startswith(PONG) and buffer[2:3] != b"\r":
            del buffer[:2]
            return KeepAlive(ping=False)
        if buffer[:1] == b"\r" and bytes(buffer[:4]) not in (b"\r", b"\r\n\r"):
            raise RemoteProtocolError("stray CR between messages")
        return None

    def _message_end(self) -> int | None:
        if self._message_size is None:
            match = _HEAD_END.search(self._buffer, max(self._scanned - 3, 0))
            if match is None:
                self._scanned = len(self._buffer)
                self._check_size(len(self._buffer))
                return None
            block = parse_header_block(bytes(self._buffer[: match.start()]))
            length = block.content_length
            if length is None:
                raise RemoteProtocolError("Content-Length is mandatory on streams (RFC 3261 §18.3)")
            self._message_size = match.end() + length
            self._check_size(self._message_size)
        return self._message_size if len(self._buffer) >= self._message_size else None

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise RemoteProtocolError(f"message of {size} bytes exceeds {self._max}")
