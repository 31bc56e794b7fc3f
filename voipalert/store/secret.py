"""The server secret: the key that webhook signing secrets are derived from, kept in a file
of its own, never in the database.

A webhook sender that signs (Grafana's "HMAC signature") shares a secret with us. If that
secret could be computed from what the database holds, anyone who can read the database file
(a backup, a copied disk, a local user when the file's mode is loose) could forge signed
triggers. So each token gets a random *salt* in the database, and its signing secret is
``HMAC-SHA256(server key, salt)``: the salt alone is useless without the key, and the key
lives in a separate ``0600`` file (by default ``<database>.secret``), created at the first
start. Losing or replacing that file changes every signing secret (the bearer tokens are not
affected); ``voipalert token signing-secret NAME`` prints the current one.

Everything here creates its files with owner-only modes whatever the process umask is: the
mode is given to ``open(2)`` *and* set again with ``fchmod``, because the umask can only
remove bits and a file that already exists keeps its old mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from voipalert.store.errors import StoreError

log = logging.getLogger("voipalert.store")

KEY_BYTES: Final = 32
SALT_BYTES: Final = 16
SIGNING_PREFIX: Final = "vas_"
PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700
_CONTEXT: Final = b"voipalert webhook signing secret v1\x00"


def default_secret_file(database: Path | str) -> Path | None:
    """``<database>.secret``, or None for an in-memory database (a key per process)."""
    text = str(database)
    if text == ":memory:" or text.startswith("file::memory:"):
        return None
    return Path(text + ".secret")


def make_private(path: Path) -> None:
    """Take group and other bits off ``path`` when it has any (a file made by an older
    version, or under a loose umask), saying so once in the log."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        private = PRIVATE_DIR if path.is_dir() else PRIVATE_FILE
        os.chmod(path, mode & private)
        log.warning(
            "tightened the mode of %s from %o to %o (other users could read it)",
            path,
            mode,
            mode & private,
        )


def create_private(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new file ``path`` with mode 0600; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return True


def load_server_key(path: Path | None) -> bytes:
    """The key in ``path`` (hex on one line), created with a fresh random key at the first
    start; a random key of this process alone when ``path`` is None."""
    if path is None:
        return secrets.token_bytes(KEY_BYTES)
    try:
        if create_private(path, secrets.token_hex(KEY_BYTES).encode("ascii") + b"\n"):
            log.warning("created the server secret %s (keep it with the database)", path)
        make_private(path)
        text = path.read_text("ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as exc:
        raise StoreError(f"server secret {path}: {exc}") from exc
    if len(key) < KEY_BYTES:
        raise StoreError(f"server secret {path}: expected {KEY_BYTES * 2} hex digits")
    return key


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def derive_signing_secret(key: bytes, salt: str) -> str:
    """The secret a webhook sender signs with: HMAC-SHA256 of the token's salt under the
    server key, so the database alone does not give it away."""
    digest = hmac.new(key, _CONTEXT + salt.encode("ascii"), hashlib.sha256).hexdigest()
    return SIGNING_PREFIX + digest
