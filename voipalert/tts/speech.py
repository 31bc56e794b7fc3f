"""The speech façade: text (or a catalog phrase) in a language → a telephone-ready prompt.

One pipeline for calls and for ``voipalert say``: pronunciation rules → Piper in the worker
pool (or the cache) → 8 kHz level-normalised PCM.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType

from voipalert.tts.cache import PromptCache
from voipalert.tts.catalog import load_catalog
from voipalert.tts.config import TtsConfig
from voipalert.tts.errors import NoVoiceForLanguageError, TemplateConfigError
from voipalert.tts.inventory import ChecksumCache, load_inventory
from voipalert.tts.prompt import Prompt
from voipalert.tts.pronounce import Explanation, Pronouncer
from voipalert.tts.render import Renderer
from voipalert.tts.templates import MessageTemplate, RenderedText, TextLimits, render_message
from voipalert.tts.voices import Voice, VoiceInventory, primary_language

_log = logging.getLogger(__name__)

CHECKSUMS_FILE = "checksums.json"
PROMPTS_DIR = "prompts"


def pronouncer_for(config: TtsConfig, language: str) -> Pronouncer:
    """The rules for a language with the site's entries (per-language ones win)."""
    primary = primary_language(language)
    site = {**config.pronunciations, **config.pronunciations_by_language.get(primary, {})}
    return Pronouncer(primary, site)


class Speech:
    def __init__(self, config: TtsConfig, inventory: VoiceInventory, renderer: Renderer) -> None:
        self.config = config
        self.inventory = inventory
        self.renderer = renderer
        self.limits = TextLimits(config.max_field_chars, config.max_message_chars)
        self._pronouncers: dict[str, Pronouncer] = {}

    @classmethod
    def open(cls, config: TtsConfig) -> Speech:
        """Find and verify the voices (blocking, start-up) and build the renderer.

        Raises ``BrokenVoiceError`` (a ``ConfigError``) naming each unusable voice."""
        cache_dir = config.cache_dir
        checksums = ChecksumCache(cache_dir / CHECKSUMS_FILE if cache_dir else None)
        inventory = load_inventory(config.voices_dir, checksums, default_voice=config.default_voice)
        cache = PromptCache(cache_dir / PROMPTS_DIR, config.cache_max_bytes) if cache_dir else None
        renderer = Renderer(inventory, config.render, cache=cache, workers=config.workers)
        return cls(config, inventory, renderer)

    def voice_for(self, language: str | None = None, voice_id: str | None = None) -> Voice:
        """The voice to use: ``voice_id`` if given (it must speak ``language``), else the
        configured or installed voice for ``language``, else the default voice."""
        if voice_id is not None:
            voice = self.inventory.get(voice_id)
            if language is not None and voice.primary_language != primary_language(language):
                raise NoVoiceForLanguageError(
                    f"voice {voice.id} speaks {voice.language}, not {language}"
                )
            return voice
        if language is None:
            return self.inventory.get(self.inventory.default_id)
        return self.inventory.for_language(language, self.config.language_voices)

    def pronouncer(self, language: str) -> Pronouncer:
        primary = primary_language(language)
        pronouncer = self._pronouncers.get(primary)
        if pronouncer is None:
            pronouncer = pronouncer_for(self.config, primary)
            self._pronouncers[primary] = pronouncer
        return pronouncer

    def explain(self, text: str, language: str) -> Explanation:
        return self.pronouncer(language).explain(text)

    async def say(
        self, text: str, *, language: str | None = None, voice_id: str | None = None
    ) -> Prompt:
        """Render ``text`` exactly as a call would play it."""
        voice = self.voice_for(language, voice_id)
        spoken = self.pronouncer(language or voice.primary_language).spoken(text)
        return await self.renderer.render(spoken, voice.id)

    async def phrase(self, key: str, *, language: str, **fields: object) -> Prompt:
        """A catalog phrase ("goodbye", "already_acknowledged" with name=...) as a prompt."""
        text = load_catalog(language).render(key, fields, self.limits)
        return await self.say(text, language=language)

    async def alert(
        self, template: MessageTemplate, fields: Mapping[str, object]
    ) -> tuple[Prompt, RenderedText]:
        """An alert's message in the template's language; when the template fails, the
        catalog's fallback sentence is said and the problem is logged and returned."""
        catalog = load_catalog(template.language)
        rendered = render_message(template, fields, catalog, self.limits)
        if rendered.problem is not None:
            _log.warning("%s; saying the fallback sentence instead", rendered.problem)
        return await self.say(rendered.text, language=template.language), rendered

    def problems(self, languages: Sequence[str]) -> list[str]:
        """Start-up check: each language needs a voice, a catalog and pronunciation rules."""
        problems = self.inventory.language_problems(languages, self.config.language_voices)
        for language in languages:
            try:
                load_catalog(language)
                self.pronouncer(language)
            except TemplateConfigError as exc:
                problems += exc.problems
            except ValueError as exc:
                problems.append(f"language {language}: {exc}")
        return problems

    async def aclose(self) -> None:
        await self.renderer.aclose()

    async def __aenter__(self) -> Speech:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
