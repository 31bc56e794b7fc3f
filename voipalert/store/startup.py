"""What stops the database from opening, said in one line with the file and the fix.

Every command that needs the database (``serve``, ``rota``, ``token`` ...) opens it first;
an operator who gets the path, the owner or the version wrong must read what to do, not a
traceback. The checks that can be made before SQLite is touched are made first (a missing
directory is the usual mistake after a fresh install); the rest is read from the SQLite
error, whose messages are stable across versions (they are part of its C API's error
strings, ``sqlite3_errstr``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from voipalert.store.errors import DatabaseUnusable

_IN_MEMORY = ":memory:"


def check_location(path: Path | str) -> None:
    """Raise ``DatabaseUnusable`` when the file cannot be created or written where it is."""
    if str(path) == _IN_MEMORY or str(path).startswith("file:"):
        return
    file = Path(path)
    directory = file.absolute().parent
    if not directory.is_dir():
        raise DatabaseUnusable(
            file,
            f"its directory {directory} does not exist",
            f"create it (sudo install -d -m 0750 -o voipalert -g voipalert {directory}) "
            "or set [database] path (VOIPALERT_DATABASE__PATH)",
            configuration=True,
        )
    if file.is_dir():
        raise DatabaseUnusable(
            file, "it is a directory", "set [database] path to a file name", configuration=True
        )
    # SQLite in WAL mode keeps two files next to the database (-wal, -shm), so even an
    # existing, writable database needs a writable directory.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DatabaseUnusable(file, f"its directory {directory} is not writable", _OWN_IT)
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        raise DatabaseUnusable(file, "the file is read-only for this user", _OWN_IT)


_OWN_IT = (
    "run voipalert as the user that owns the state directory (sudo -u voipalert ...) "
    "or give that user write access (sudo chown -R voipalert: DIRECTORY)"
)


def explain(path: Path | str, error: BaseException) -> DatabaseUnusable:
    """The one-line reason for a failed open (``error``: the SQLite error or its wrapper)."""
    if isinstance(error, DatabaseUnusable):
        return error
    cause = error if isinstance(error, sqlite3.Error) else error.__cause__
    text = str(cause if cause is not None else error)
    lowered = text.lower()
    file = Path(path)
    if "locked" in lowered or "busy" in lowered:
        return DatabaseUnusable(
            file,
            "another process holds a lock on it",
            "stop the other voipalert (or sqlite3 shell) using this file, "
            "or raise [database] busy_timeout_ms",
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return DatabaseUnusable(file, f"it cannot be written ({text})", _OWN_IT)
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return DatabaseUnusable(
            file,
            f"the file is damaged or not a voipalert database ({text})",
            "restore it from a backup, or move it aside to start with an empty database "
            "(then re-import the rota and re-create the tokens)",
        )
    return DatabaseUnusable(
        file, text, "check the file with: sqlite3 FILE 'PRAGMA integrity_check'"
    )
