import os
from pathlib import Path

import numpy as np
import pytest

from voipalert.tts.cache import PromptCache
from voipalert.tts.wav import encode_wav


def key(n: int) -> str:
    return f"{n:064x}"


def pcm(n: int, samples: int = 8000) -> np.ndarray:
    return np.full(samples, n, dtype=np.int16)


ENTRY_BYTES = len(encode_wav(pcm(0), 8000))


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, 10 * ENTRY_BYTES)
    assert cache.get(key(1)) is None
    cache.put(key(1), pcm(7))
    got = cache.get(key(1))
    assert got is not None and got.tobytes() == pcm(7).tobytes()
    assert (tmp_path / key(1)[:2] / f"{key(1)}.wav").is_file()
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic write left nothing behind


def test_the_size_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, 3 * ENTRY_BYTES)
    for n in (1, 2, 3):
        cache.put(key(n), pcm(n))
    assert cache.get(key(1)) is not None  # 1 is now the most recently used
    cache.put(key(4), pcm(4))
    assert cache.get(key(2)) is None
    assert all(cache.get(key(n)) is not None for n in (1, 3, 4))
    assert cache.size_bytes <= 3 * ENTRY_BYTES
    assert len(cache) == 3


def test_a_restart_keeps_the_order_of_use(tmp_path: Path) -> None:
    first = PromptCache(tmp_path, 3 * ENTRY_BYTES)
    for n in (1, 2, 3):
        first.put(key(n), pcm(n))
        path = tmp_path / key(n)[:2] / f"{key(n)}.wav"
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
    restarted = PromptCache(tmp_path, 3 * ENTRY_BYTES)
    assert restarted.size_bytes == 3 * ENTRY_BYTES
    restarted.put(key(4), pcm(4))
    assert restarted.get(key(1)) is None  # the oldest on disk went first


def test_a_damaged_file_is_a_miss_and_is_removed(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, 10 * ENTRY_BYTES)
    cache.put(key(1), pcm(1))
    path = tmp_path / key(1)[:2] / f"{key(1)}.wav"
    path.write_bytes(path.read_bytes()[:30])
    assert cache.get(key(1)) is None
    assert not path.exists()


def test_a_prompt_at_another_rate_is_not_served(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, 10 * ENTRY_BYTES)
    path = tmp_path / key(2)[:2] / f"{key(2)}.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_wav(pcm(1), 16000))
    assert cache.get(key(2)) is None


def test_an_unwritable_cache_does_not_fail_the_render(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = PromptCache(blocker, 10 * ENTRY_BYTES)
    cache.put(key(1), pcm(1))  # logged, not raised
    assert cache.get(key(1)) is None


def test_keys_cannot_escape_the_directory(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, 10 * ENTRY_BYTES)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        cache.get("../../etc/passwd")
