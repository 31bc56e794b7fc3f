"""A rendered prompt, and the content address it is cached under."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from voipalert.tts.audio import Int16Array
from voipalert.tts.config import TELEPHONE_RATE_HZ, RenderConfig
from voipalert.tts.voices import Voice, VoiceId

# Bump when the audio chain changes in a way the settings do not capture (a new filter, a
# different trimming rule): every cached prompt then becomes a miss.
PROMPT_FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True, eq=False)
class Prompt:
    """8 kHz mono int16 PCM exactly as a call encodes it to G.711 (read-only array)."""

    pcm: Int16Array
    text: str
    voice_id: VoiceId
    key: str
    from_cache: bool = False
    sample_rate: int = TELEPHONE_RATE_HZ

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise ValueError("a prompt is one channel of int16 samples")
        self.pcm.flags.writeable = False

    @property
    def duration_seconds(self) -> float:
        return len(self.pcm) / self.sample_rate


def prompt_key(
    text: str, voice: Voice, config: RenderConfig, engine_versions: Mapping[str, str]
) -> str:
    """sha256 over everything that decides the audio: format version, voice id and both of
    its files' checksums, the exact text Piper reads, every render setting, the output rate
    and the versions of the libraries that synthesize and resample."""
    material = {
        "format": PROMPT_FORMAT_VERSION,
        "voice": voice.id,
        "model_sha256": voice.model_sha256,
        "config_sha256": voice.config_sha256,
        "text": text,
        "render": dataclasses.asdict(config),
        "rate": TELEPHONE_RATE_HZ,
        "engines": dict(sorted(engine_versions.items())),
    }
    canonical = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
