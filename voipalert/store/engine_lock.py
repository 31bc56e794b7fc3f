"""One engine per SQLite database: ``voipalert serve`` holds a lock on ``<database>.lock``
for its whole life, so a second ``serve`` on the same file refuses to start instead of
dialling the same people a second time (docs/database.md, "One engine per database").

The lock is a POSIX record lock (``fcntl.lockf``) on a file held open by the process:

- the kernel drops it when the process ends, however it ends (SIGKILL, OOM, power cut of
  the process), so no stale lock survives a crash and nothing has to be cleaned up;
- record locks are not inherited across ``fork``, so a child (a speech worker) can never
  keep it after its parent died; the descriptor is also close-on-exec;
- the file holds the holder's pid and host name, for the refusal message only: the lock,
  not the file's content, is what decides.

Only ``serve`` takes it. The commands that read or edit the database beside a running
server (``rota import``, ``token``, ``user``...) do not: SQLite's own locking keeps their
short transactions apart from the server's.

The lock file is opened without following a symbolic link and must be a regular file: a
link planted at that name could otherwise make the server truncate another file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path
from typing import Final

from voipalert.store.errors import DatabaseUnusable, StoreError
from voipalert.store.startup import check_location

_MAX_HOLDER_TEXT: Final = 200


class EngineLockHeld(StoreError):
    """Another ``voipalert serve`` holds the database's lock."""

    def __init__(self, database: object, lock: object, holder: str) -> None:
        super().__init__(
            f"another voipalert serve ({holder}) is running on database {database} "
            f"(it holds {lock}); stop it first, or give this one its own database"
        )
        self.holder = holder


def lock_file_of(database: Path | str) -> Path:
    return Path(f"{database}.lock")


class EngineLock:
    """The held lock; ``release()`` (or the end of the process) gives it up."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, database: Path | str) -> EngineLock | None:
        """Take the lock of ``database``; None for an in-memory database (nothing to share).

        Raises ``EngineLockHeld`` when another process holds it, and ``DatabaseUnusable``
        (one line with the fix) when the lock file cannot be opened or is not a file."""
        text = str(database)
        if text == ":memory:" or text.startswith("file:"):
            return None
        db = Path(database)
        # The database's own checks first (missing or read-only directory...): the lock file
        # sits beside it, and the operator should read the same line as without the lock.
        check_location(db)
        path = lock_file_of(db)
        fd = _open(db, path)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise DatabaseUnusable(
                        db, f"cannot lock {path} ({exc.strerror})", _FIX_LOCK
                    ) from exc
                raise EngineLockHeld(db, path, _holder(fd)) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            # Closing drops the lock; the file stays (deleting it would race with a new
            # holder that opened it meanwhile).
            os.close(self._fd)
            self._fd = None


_FIX_LOCK: Final = (
    "remove the lock file when no voipalert serve runs, and run voipalert as the user "
    "that owns the state directory (sudo -u voipalert ...)"
)


def _open(db: Path, path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            problem = f"its lock file {path} is a symbolic link"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not path.exists():
            problem = (
                f"its directory {db.absolute().parent} does not let this user create its "
                f"lock file {path.name} ({exc.strerror})"
            )
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            problem = f"its lock file {path} cannot be written by this user ({exc.strerror})"
        elif exc.errno == errno.ENOENT:
            problem = f"its directory {db.absolute().parent} does not exist"
        else:
            problem = f"cannot open its lock file {path} ({exc.strerror})"
        raise DatabaseUnusable(db, problem, _FIX_LOCK) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatabaseUnusable(db, f"its lock file {path} is not a regular file", _FIX_LOCK)
    return fd


def _holder(fd: int) -> str:
    """What the holder wrote (``pid N on HOST``), for the message."""
    try:
        raw = os.pread(fd, _MAX_HOLDER_TEXT, 0)
    except OSError:
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    # Only the first line, printable: the file is the holder's, but it could be anyone's.
    text = "".join(c for c in text.splitlines()[0] if c.isprintable()) if text else ""
    return text or "pid unknown: it has only just started"
