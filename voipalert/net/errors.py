"""Errors of the asyncio adapters (docs/architecture.md §4).

Each also inherits the builtin a caller would catch for the same failure without knowing
voipalert: a session that closed under a waiter is a ``ConnectionError``, a port range with
no free pair is an ``OSError`` (what ``bind`` itself raises when a port is taken).
"""

from __future__ import annotations

from voipalert.errors import VoipAlertError


class RtpSessionClosedError(VoipAlertError, ConnectionError):
    """The session ended (closed, or its socket failed) while something waited on it."""


class PortRangeExhaustedError(VoipAlertError, OSError):
    """No free even/odd port pair is left in the configured range."""
