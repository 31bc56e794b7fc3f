"""Where one call's key presses meet: the collector, the waiters.

The session feeds it the keys of every path (RFC 4733, SIP INFO, and the in-band
detector's, which runs with the rest of the analysis: ``media.rx_analysis``); ``next``
hands the merged, de-duplicated presses to whoever waits (the call script). Bounded: at most
``MAX_QUEUED_DIGITS`` presses wait for a reader; older ones are dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from voipalert.media.dtmf import Digit, DtmfCollector, DtmfSource
from voipalert.net.errors import RtpSessionClosedError

MAX_QUEUED_DIGITS: Final = 64


class DigitInbox:
    def __init__(self, loop: asyncio.AbstractEventLoop, *, window_s: float) -> None:
        self._loop = loop
        self._collector = DtmfCollector(window_s=window_s)
        self._digits: deque[Digit] = deque(maxlen=MAX_QUEUED_DIGITS)
        self._waiters: deque[asyncio.Future[Digit]] = deque()
        self._closed = False

    def key(self, char: str, source: DtmfSource, now: float) -> Digit | None:
        """A key from any path; the ``Digit`` when it is a new press."""
        digit = self._collector.add(char, source, now)
        if digit is None:
            return None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(digit)
                return digit
        self._digits.append(digit)
        return digit

    async def next(self) -> Digit:
        if self._digits:
            return self._digits.popleft()
        if self._closed:
            raise RtpSessionClosedError("the RTP session is closed")
        waiter: asyncio.Future[Digit] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def close(self) -> None:
        """Every waiter fails with ``RtpSessionClosedError``; queued presses stay readable."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RtpSessionClosedError("the RTP session closed"))
