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


class DatabaseUnusable(StoreError):
    """The database cannot be opened; the message names the file and the fix, on one line.

    ``configuration`` says the cause is the configured path (exit status 2) rather than the
    file itself (exit status 1)."""

    def __init__(self, path: object, problem: str, fix: str, *, configuration: bool = False):
        super().__init__(f"database {path}: {problem}; fix: {fix}")
        self.path = path
        self.problem = problem
        self.configuration = configuration
