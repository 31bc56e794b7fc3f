"""serve starts the audio analysis workers of ``[media] analysis_workers`` and stops them
with its exit stack, after the phones (docs/rx-workers.md)."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from voipalert.app.serve import _start_analysis
from voipalert.errors import ConfigError
from voipalert.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("VOIPALERT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


async def test_the_default_is_one_worker_stopped_with_the_stack() -> None:
    settings = load_settings()
    assert settings.media.analysis_workers == 1
    async with AsyncExitStack() as stack:
        pool = await _start_analysis(settings, stack)
        assert pool is not None and len(pool.pids) == 1
        (pid,) = pool.pids
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_zero_workers_keeps_the_analysis_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPALERT_MEDIA__ANALYSIS_WORKERS", "0")
    async with AsyncExitStack() as stack:
        assert await _start_analysis(load_settings(), stack) is None


def test_a_bad_worker_count_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPALERT_MEDIA__ANALYSIS_WORKERS", "65")
    with pytest.raises(ConfigError, match="analysis_workers"):
        load_settings()
