"""What keeps the console's pages safe to open in a browser: the session cookie, CSRF tokens,
the log-in rate limit, and the headers every page carries.

- **Session**: a random 32-byte id in a cookie that is ``HttpOnly`` (no script reads it),
  ``SameSite=Strict`` (no other site's page sends it) and ``Secure`` when the console is
  served over HTTPS; the database keeps only its SHA-256 (``store.users``). A log-in always
  makes a new id and deletes the one the browser brought (session fixation).
- **CSRF**: every form carries the session's token in a hidden field, compared in constant
  time; a POST without it, or whose ``Origin`` is another site, is refused (403). The log-in
  form, which has no session yet, uses a double-submit cookie.
- **Brute force**: per client address, at most ``login_attempts`` log-ins per
  ``login_window``; per account, ``lockout_failures`` failures in a row lock it for
  ``lockout_seconds`` (the right password is refused meanwhile).
- **Headers**: a strict Content-Security-Policy (scripts, styles and connections only from
  the console itself, no inline script or style, no framing), ``nosniff``, a referrer only
  to the console itself (with ``no-referrer`` Chromium sends ``Origin: null`` on our own
  forms, which the origin check must refuse).
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from voipalert.console.passwords import DEFAULT_COST, Cost

SESSION_COOKIE: Final = "va_session"
LOGIN_COOKIE: Final = "va_login"
LANG_COOKIE: Final = "va_lang"

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send "Origin: null"
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    session_hours: float = 12.0
    login_attempts: int = 10  # per client address and window
    login_window_seconds: float = 300.0
    lockout_failures: int = 5
    lockout_seconds: float = 900.0
    events_poll_seconds: float = 1.0
    # Hashes made with other parameters are re-made with these at the next log-in.
    password_cost: Cost = DEFAULT_COST


def set_cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def same_token(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def same_origin(request: web.Request) -> bool:
    """A request without ``Origin`` (an old browser, a script) is left to the CSRF token;
    one with an ``Origin`` must name this very host (and port). The scheme is not compared:
    behind a proxy that terminates TLS the browser says https and we see http."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    scheme, sep, host = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and host == request.host


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


class LoginLimiter:
    """At most ``attempts`` log-ins per client address per ``window`` seconds (a sliding
    window); the table is bounded, so many addresses cannot grow it without limit."""

    MAX_ADDRESSES: Final = 10_000

    def __init__(self, attempts: int, window: float) -> None:
        self._attempts = attempts
        self._window = window
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str, now: float) -> bool:
        times = self._seen.get(address)
        if times is None:
            if len(self._seen) >= self.MAX_ADDRESSES:
                self._seen.clear()
            times = self._seen[address] = deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._attempts:
            return False
        times.append(now)
        return True
