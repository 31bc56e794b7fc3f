"""Session timers (RFC 4028) and reliable provisionals (RFC 3262): the header arithmetic.

Pure functions and one small value type; ``call.py`` holds the state and sends the
requests (docs/sip.md §4.13). Times are seconds on the agent's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from voipalert.sip.message import Request, Response

MIN_SE: Final = 90
"""RFC 4028 §4: the smallest session interval anyone may ask for, unless a 422 says more."""
MIN_INTERVAL: Final = 4
"""A 2xx asking for less (hostile, or a test) gets refreshes every 2 s, never a flood."""
MAX_INTERVAL: Final = 86400
"""Larger values are clamped: a day without a refresh is as good as none."""


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A ``Session-Expires: N;refresher=uac|uas`` value (RFC 4028 §4)."""

    seconds: int
    refresher: str | None

    def format(self) -> str:
        return f"{self.seconds}" + (f";refresher={self.refresher}" if self.refresher else "")


def parse_session_expires(message: Request | Response) -> SessionExpires | None:
    """The first ``Session-Expires`` (compact ``x``); None when absent or unreadable.
    Hostile input: a non-numeric, zero or huge delta is ignored or clamped, never raised."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    head, *params = (part.strip() for part in value.split(";"))
    if not head.isdigit() or len(head) > 10:
        return None
    seconds = min(int(head), MAX_INTERVAL)
    if seconds < 1:
        return None
    refresher: str | None = None
    for param in params:
        name, _, param_value = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = param_value.strip().lower()
    if refresher not in ("uac", "uas"):
        refresher = None
    return SessionExpires(seconds, refresher)


def parse_min_se(message: Request | Response) -> int | None:
    """The delta of ``Min-SE`` (RFC 4028 §5), or None when absent or unreadable."""
    value = message.headers.get("Min-SE")
    if value is None:
        return None
    head = value.split(";")[0].strip()
    if not head.isdigit() or len(head) > 10:
        return None
    seconds = int(head)
    return seconds if 1 <= seconds <= MAX_INTERVAL else None


def tokens(message: Request | Response, name: str) -> frozenset[str]:
    """The comma-separated tokens of ``name`` (Require, Supported, Allow), lowercased;
    malformed items are skipped rather than raised (the network is hostile)."""
    found: set[str] = set()
    for value in message.headers.values(name):
        found.update(item.strip().lower() for item in value.split(",") if item.strip())
    return frozenset(found)


def parse_rseq(response: Response) -> int | None:
    """``RSeq`` (RFC 3262 §7.1): 1 to 2**31-1, else None (the 1xx is then not reliable)."""
    value = (response.headers.get("RSeq") or "").strip()
    if not value.isdigit() or len(value) > 10:
        return None
    rseq = int(value)
    return rseq if 1 <= rseq < 2**31 else None


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """An agreed session interval: who refreshes, and when (RFC 4028 §10).

    ``we_refresh``: we send the refreshes, at half the interval. Otherwise the far end
    does, and without one by ``N - min(32, N/3)`` after the last we BYE the call."""

    interval: int
    we_refresh: bool
    refreshed_at: float

    @property
    def refresh_at(self) -> float:
        return self.refreshed_at + self.interval / 2

    @property
    def expires_at(self) -> float:
        return self.refreshed_at + self.interval - min(32.0, self.interval / 3)

    def next_deadline(self) -> float:
        return self.refresh_at if self.we_refresh else self.expires_at


def agreed_as_uac(response: Response, now: float) -> SessionTimer | None:
    """The session timer a 2xx to our INVITE (or to our refresh) sets (RFC 4028 §7.2):
    none without ``Session-Expires``; ``refresher=uac`` (or none given: we asked, so we
    refresh) makes us the refresher, ``uas`` the far end."""
    expires = parse_session_expires(response)
    if expires is None:
        return None
    interval = max(expires.seconds, MIN_INTERVAL)
    return SessionTimer(interval, expires.refresher != "uas", now)


def agreed_as_uas(request: Request, now: float) -> tuple[SessionTimer, SessionExpires] | None:
    """A refresh the far end sent (its re-INVITE or UPDATE, RFC 4028 §9): the timer from
    now on and the ``Session-Expires`` to put in our 2xx. ``refresher=uac`` in its request
    means itself; without one we leave the refreshing to it (it asked, it has a timer)."""
    expires = parse_session_expires(request)
    if expires is None:
        return None
    refresher = expires.refresher or "uac"
    answer = SessionExpires(expires.seconds, refresher)
    return SessionTimer(expires.seconds, refresher == "uas", now), answer
