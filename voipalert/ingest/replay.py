"""Signatures already seen, so that a captured signed webhook cannot be sent again.

A signed request stays acceptable for as long as its timestamp is within
``signature_max_age_seconds`` of our clock, either way: up to twice that age in all. Every
signature that matched is therefore remembered for that whole window, and a second request
carrying it is refused. Entries all live for the same time, so insertion order is expiry
order: expired ones are dropped from the front, and memory is bounded by ``max_entries``.
When the table is full of live entries the request is refused (fail closed) rather than an
entry forgotten early; only a holder of a signing secret can fill it, at a rate no alert
source reaches.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final

MAX_ENTRIES: Final = 65_536


class Seen(enum.Enum):
    NEW = "new"
    REPLAYED = "replayed"
    FULL = "full"


class ReplayCache:
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        if ttl_seconds <= 0 or max_entries < 1:
            raise ValueError("ttl_seconds and max_entries must be positive")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._expires: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expires)

    def _expire(self, now: float) -> None:
        while self._expires:
            key, expires = next(iter(self._expires.items()))
            if expires > now:
                return
            del self._expires[key]

    def check_and_add(self, key: str, now: float) -> Seen:
        """Record ``key`` (monotonic ``now``); REPLAYED when it is already there."""
        self._expire(now)
        if key in self._expires:
            return Seen.REPLAYED
        if len(self._expires) >= self._max:
            return Seen.FULL
        self._expires[key] = now + self._ttl
        return Seen.NEW

    def forget(self, key: str) -> None:
        """The request failed on our side (5xx): let the sender's retry through."""
        self._expires.pop(key, None)
