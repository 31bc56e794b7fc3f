"""Identifiers the user agent mints (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3; docs/sip.md §4.2).

Public API: ``new_branch(rng)`` (``z9hG4bK`` + 80 random bits, a new one for every
transaction, the authenticated retry and the 2xx ACK included), ``new_tag(rng)`` (64 bits)
and ``new_call_id(rng)`` (128 bits). Pass ``secrets.SystemRandom()`` in production and a
seeded ``random.Random`` in tests; the core never picks its own randomness.
"""

from __future__ import annotations

import random

from voipalert.sip.fields import BRANCH_MAGIC_COOKIE


def new_branch(rng: random.Random) -> str:
    return f"{BRANCH_MAGIC_COOKIE}{rng.getrandbits(80):020x}"


def new_tag(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def new_call_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"
