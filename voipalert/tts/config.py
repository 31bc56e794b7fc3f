"""The speech package's own configuration (aioquic style: the core owns its config type;
the composition root maps ``settings.TtsSettings`` onto it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from voipalert.tts.voices import DEFAULT_VOICE_ID

TELEPHONE_RATE_HZ: Final = 8000


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """Everything that changes the rendered audio (all of it goes into the cache key).

    Levels are dBFS of RMS relative to digital full scale (a full-scale sine is -3 dBFS).
    The active speech level is measured the ITU-T P.56 way (energy above a threshold 15.9 dB
    below the level), so pauses do not drag it down.
    """

    target_level_dbfs: float = -20.0
    # G.711 saturates at ±32124 (μ-law) / ±32256 (A-law); -3 dBFS leaves room for the
    # coarse top segment's rounding so the decoded signal never sits on the clip code.
    peak_ceiling_dbfs: float = -3.0
    sentence_pause_ms: int = 300
    # Silence kept around each sentence after trimming, so onsets and tails are not cut.
    edge_margin_ms: int = 40
    # A 10 ms frame counts as silence when it is this far below the sentence's loudest frame.
    silence_threshold_db: float = -40.0
    # Piper synthesis knobs; None keeps the voice's own value.
    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    speaker_id: int | None = None


@dataclass(frozen=True, slots=True)
class TtsConfig:
    voices_dir: Path | None = Path("voices")
    cache_dir: Path | None = Path("voipalert-cache")
    cache_max_bytes: int = 256 * 1024 * 1024
    default_voice: str = DEFAULT_VOICE_ID
    # Primary language ("fr") → voice id; a language not listed uses any voice speaking it.
    language_voices: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1
    render: RenderConfig = RenderConfig()
    # Site pronunciations: for every language, then per primary language (overriding).
    pronunciations: Mapping[str, str] = field(default_factory=dict)
    pronunciations_by_language: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    max_field_chars: int = 160
    max_message_chars: int = 600
