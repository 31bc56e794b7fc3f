"""Errors of the media core (docs/architecture.md §4).

``RemoteProtocolError`` means the far end sent bytes that are not what the RFC allows; the
I/O layer counts and drops them, it never lets one end a call. ``LocalProtocolError`` means
voipalert itself asked for something impossible (a bug, or a value out of range).
"""

from __future__ import annotations

from voipalert.errors import VoipAlertError


class MediaError(VoipAlertError):
    """Base class of the media core's errors."""


class RemoteProtocolError(MediaError, ValueError):
    """A packet or payload from the far end is malformed."""


class LocalProtocolError(MediaError, ValueError):
    """We were asked to build something the wire format cannot carry."""
