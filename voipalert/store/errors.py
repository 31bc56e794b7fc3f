"""Errors of the store."""

from __future__ import annotations

from voipalert.errors import VoipAlertError


class StoreError(VoipAlertError):
    """The database could not do what was asked (it is unreadable, newer than this code, or
    a statement failed); the message says what was being done."""


class AlertNotFound(StoreError, LookupError):
    """No alert has that id."""


class UnknownReference(StoreError, ValueError):
    """A new alert names a policy or team the rota does not have."""
