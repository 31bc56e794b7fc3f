"""Fixtures for speech tests: the REAL default voice (no fake synthesizer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tts.voice_dirs import joe_model_sha256
from voipalert.tts.cache import PromptCache
from voipalert.tts.inventory import ChecksumCache, load_inventory
from voipalert.tts.render import Renderer
from voipalert.tts.voices import VoiceInventory


@pytest.fixture(scope="session")
def joe_sha256() -> str:
    return joe_model_sha256()


@pytest.fixture(scope="session")
def inventory() -> VoiceInventory:
    return load_inventory(None, ChecksumCache())


@pytest.fixture(scope="session")
def renderer(
    inventory: VoiceInventory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Renderer]:
    """One real renderer for the session (the voice loads once), with its own cache."""
    cache = PromptCache(tmp_path_factory.mktemp("prompts"), 64 * 1024 * 1024)
    shared = Renderer(inventory, cache=cache, workers=2)
    yield shared
    shared.close()
