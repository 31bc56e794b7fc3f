"""Piper synthesis in a worker process (docs/realtime.md §4).

Piper's Python and C code (phonemisation, the resampler) holds the GIL for stretches of up
to ~16 ms while it synthesizes; in a thread of ``serve`` that is the event loop pacing
every call's audio waiting for the GIL, longer whenever the machine preempts the
synthesizing thread while it holds it. In a process of its own it shares nothing with
the loop but a pipe. A crash of the synthesizer (a bad model, onnxruntime) also ends only
the worker, which the renderer replaces.

The functions here run in the worker: each loads a voice once and keeps it for the
worker's life. Jobs and results cross the process boundary by pickling, so they are plain
data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from piper import PiperVoice, SynthesisConfig

from voipalert.tts.audio import Int16Array, telephone_prompt
from voipalert.tts.config import RenderConfig
from voipalert.tts.errors import RenderError
from voipalert.tts.voices import VoiceId

WARM_UP_TEXT: Final = "Ready."
# Synthesis is batch work beside calls whose audio leaves every 20 ms: its processes run
# this much nicer than serve, so that on a busy machine the event loop gets a core first
# (docs/realtime.md §2). Raising one's own nice value needs no privilege.
BEHIND_THE_CALLS: Final = 10


def behind_the_calls() -> None:
    """The worker process's initializer: lower its scheduling priority. Where a sandbox
    refuses it with an error (a seccomp filter returning EPERM), the worker runs at serve's
    priority rather than not at all; deploy/voipalert.service allows it."""
    try:
        os.nice(BEHIND_THE_CALLS)
    except OSError:
        pass


_VOICES: dict[VoiceId, PiperVoice] = {}


@dataclass(frozen=True, slots=True)
class Job:
    voice_id: VoiceId
    model_path: str
    config_path: str
    render: RenderConfig
    text: str = WARM_UP_TEXT


def _voice(job: Job) -> PiperVoice:
    voice = _VOICES.get(job.voice_id)
    if voice is None:
        try:
            voice = PiperVoice.load(job.model_path, config_path=job.config_path)
        except Exception as exc:
            raise RenderError(f"voice {job.voice_id}: cannot load {job.model_path}: {exc}") from exc
        _VOICES[job.voice_id] = voice
    return voice


def _synthesis_config(render: RenderConfig) -> SynthesisConfig:
    # Piper's own per-sentence peak normalisation would give each sentence a different
    # gain; the level is set once for the whole prompt in audio.telephone_prompt.
    return SynthesisConfig(
        speaker_id=render.speaker_id,
        length_scale=render.length_scale,
        noise_scale=render.noise_scale,
        noise_w_scale=render.noise_w_scale,
        normalize_audio=False,
    )


def synthesize(job: Job) -> Int16Array:
    """Piper, then 8 kHz telephone PCM."""
    voice = _voice(job)
    try:
        sentences = [
            chunk.audio_float_array
            for chunk in voice.synthesize(job.text, _synthesis_config(job.render))
        ]
    except Exception as exc:
        raise RenderError(f"voice {job.voice_id}: synthesis failed: {exc}") from exc
    pcm = telephone_prompt(sentences, voice.config.sample_rate, job.render)
    if len(pcm) == 0:
        raise RenderError(f"voice {job.voice_id} produced no audio for {job.text[:60]!r}")
    return pcm


def warm_up(job: Job) -> None:
    """Load the voice and run it once: onnxruntime's first run of a session is slower
    than the next ones (memory arena growth; measured +15-30 % on a short sentence)."""
    voice = _voice(job)
    for _ in voice.synthesize(job.text, _synthesis_config(job.render)):
        pass
