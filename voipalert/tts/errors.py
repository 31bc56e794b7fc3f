"""Errors of the speech package (docs/architecture.md §4).

A broken voice or template is a configuration problem (``ConfigError``: the CLI exits 2 and
start-up stops); asking for a voice that is not installed is a ``LookupError``.
"""

from __future__ import annotations

from voipalert.errors import ConfigError, VoipAlertError


class TtsError(VoipAlertError):
    """Base class of the speech errors."""


class VoiceNotFoundError(TtsError, LookupError):
    """No installed voice has this id."""


class NoVoiceForLanguageError(TtsError, LookupError):
    """No installed voice speaks this language."""


class BrokenVoiceError(ConfigError, TtsError):
    """A voice in ``voices/`` (or its manifest) is unusable; each problem names the voice."""


class TemplateConfigError(ConfigError, TtsError):
    """A message template or catalog cannot be used; each problem names the template."""


class RenderError(TtsError):
    """Synthesis produced nothing usable (empty text, no audio, model failure)."""
