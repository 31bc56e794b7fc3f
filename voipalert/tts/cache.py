"""Content-addressed prompt cache on disk: a repeated message costs one file read.

Files are ``<dir>/<key[:2]>/<key>.wav`` (listenable with any player), written atomically.
The size cap evicts the least recently used prompts: a hit touches the file (``utime``),
and at start the files are ordered by that time; within a process the order is kept in
memory, so no clock is read. Several processes may share the directory (the daemon and
``voipalert say``); each enforces the cap on what it knows, and a file that vanished or is
damaged is simply a miss. Disk errors never fail a call: they are logged and the prompt is
rendered again.

The prompts are what alerts say, so they are private like the database: every directory
this cache creates is 0700 and every file 0600 (``mkstemp``), whatever the umask; a prompt
directory left open by an older version is tightened when first written to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

from voipalert.tts.audio import Int16Array
from voipalert.tts.config import TELEPHONE_RATE_HZ
from voipalert.tts.wav import atomic_write, decode_wav, encode_wav

_log = logging.getLogger(__name__)

_KEY: Final = re.compile(r"^[0-9a-f]{64}$")
_PRIVATE_DIR: Final = 0o700


def _private_dir(path: Path) -> None:
    """``path`` (and a missing parent) as a directory only its owner can enter."""
    if not path.parent.is_dir():
        _private_dir(path.parent)
    try:
        path.mkdir(mode=_PRIVATE_DIR)
    except FileExistsError:
        if path.stat().st_mode & 0o077 == 0:
            return
    os.chmod(path, _PRIVATE_DIR)  # mkdir's mode is filtered by the umask; this is not


class PromptCache:
    """Thread-safe; ``get``/``put`` do blocking file I/O (call them from a worker thread)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] | None = None  # key → size, oldest first
        self._total = 0

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("a cache key is 64 lowercase hex digits")
        return self.directory / key[:2] / f"{key}.wav"

    def _scan(self) -> OrderedDict[str, int]:
        if self._index is not None:
            return self._index
        found: list[tuple[float, str, int]] = []
        if self.directory.is_dir():
            for path in self.directory.glob("??/*.wav"):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if _KEY.match(path.stem):
                    found.append((stat.st_mtime, path.stem, stat.st_size))
        found.sort()
        self._index = OrderedDict((key, size) for _, key, size in found)
        self._total = sum(size for _, _, size in found)
        return self._index

    def _forget(self, key: str) -> None:
        index = self._scan()
        self._total -= index.pop(key, 0)

    def get(self, key: str) -> Int16Array | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            with self._lock:
                self._forget(key)
            return None
        except OSError as exc:
            _log.warning("cannot read cached prompt %s: %s", path, exc)
            return None
        try:
            pcm, rate = decode_wav(data)
            if rate != TELEPHONE_RATE_HZ or len(pcm) == 0:
                raise ValueError(f"{rate} Hz, {len(pcm)} samples")
        except ValueError as exc:
            _log.warning("dropping damaged cached prompt %s: %s", path, exc)
            with self._lock:
                self._forget(key)
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # the LRU order survives a restart
        with self._lock:
            index = self._scan()
            if key not in index:  # written by another process
                index[key] = len(data)
                self._total += len(data)
            index.move_to_end(key)
        return pcm

    def put(self, key: str, pcm: Int16Array) -> None:
        path = self._path(key)
        data = encode_wav(pcm, TELEPHONE_RATE_HZ)
        try:
            _private_dir(self.directory)
            _private_dir(path.parent)
            atomic_write(path, data)  # mkstemp: the file is 0600
        except OSError as exc:
            _log.warning("cannot cache prompt %s: %s", path, exc)
            return
        with self._lock:
            self._forget(key)
            index = self._scan()
            index[key] = len(data)
            self._total += len(data)
            self._evict(keep=key)

    def _evict(self, keep: str) -> None:
        index = self._scan()
        while self._total > self.max_bytes and len(index) > 1:
            key, size = next(iter(index.items()))
            if key == keep:
                index.move_to_end(key)
                continue
            del index[key]
            self._total -= size
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError as exc:
                _log.warning("cannot evict cached prompt %s: %s", key, exc)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            self._scan()
            return self._total

    def __len__(self) -> int:
        with self._lock:
            return len(self._scan())
