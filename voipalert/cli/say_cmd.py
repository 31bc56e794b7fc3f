"""``voipalert say``: render text exactly as a call would play it, or show its spoken form.

``voipalert say "SRV-DB-01 is down" -o alert.wav`` writes the 8 kHz mono 16-bit PCM that a
call encodes to G.711 (same pronunciation rules, voice, rendering and cache as a call).
``voipalert say --explain TEXT`` prints the text after the pronunciation rules, then each
rewrite and the rule that made it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from voipalert.settings import load_settings
from voipalert.tts.errors import NoVoiceForLanguageError, RenderError, VoiceNotFoundError
from voipalert.tts.pronounce import Pronouncer, supported_languages

if TYPE_CHECKING:
    from voipalert.tts.config import TtsConfig
    from voipalert.tts.prompt import Prompt
    from voipalert.tts.speech import Speech

EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    say = subparsers.add_parser(
        "say",
        help="render TEXT as a call would play it (or --explain its spoken form)",
        description="Render TEXT with the configured voices, pronunciation rules and "
        "cache, exactly as a call plays it.",
    )
    say.add_argument("text", metavar="TEXT", help="what to say")
    say.add_argument(
        "-o", "--output", type=Path, metavar="FILE.wav", help="write the 8 kHz mono WAV here"
    )
    say.add_argument("--voice", metavar="ID", help="voice id (default: the voice for --lang)")
    say.add_argument(
        "--lang", choices=supported_languages(), help="language (default: the voice's, else en)"
    )
    say.add_argument(
        "--explain", action="store_true", help="print the text after pronunciation rules only"
    )
    say.set_defaults(func=run_say)


def _explain(pronouncer: Pronouncer, text: str) -> int:
    explanation = pronouncer.explain(text)
    print(explanation.spoken)
    for change in explanation.changes:
        print(f"  {change.original!r} → {change.spoken!r} ({change.rule})")
    return 0


async def _render(speech: Speech, text: str, language: str | None, voice: str | None) -> Prompt:
    async with speech:
        return await speech.say(text, language=language, voice_id=voice)


def _speak(config: TtsConfig, args: argparse.Namespace) -> Prompt | int:
    # Imported here: the speech engine (onnxruntime) takes seconds to import, and no other
    # command that merely lists the parsers should pay for it.
    from voipalert.tts.speech import Speech, pronouncer_for

    if args.explain and args.voice is None:
        return _explain(pronouncer_for(config, args.lang or "en"), args.text)
    speech = Speech.open(config)
    voice = speech.voice_for(args.lang, args.voice)
    language = args.lang or voice.primary_language
    if args.explain:
        return _explain(speech.pronouncer(language), args.text)
    return asyncio.run(_render(speech, args.text, language, voice.id))


def run_say(args: argparse.Namespace) -> int:
    config = load_settings(args.config).tts.to_config()
    if not args.explain and not args.output:
        print("voipalert say: give -o FILE.wav (or --explain)", file=sys.stderr)
        return EXIT_USAGE
    try:
        prompt = _speak(config, args)
    except (VoiceNotFoundError, NoVoiceForLanguageError, RenderError, ValueError) as exc:
        print(f"voipalert say: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if isinstance(prompt, int):
        return prompt
    from voipalert.tts.wav import write_wav  # numpy: see _speak

    try:
        write_wav(args.output, prompt.pcm, prompt.sample_rate)
    except OSError as exc:
        print(f"voipalert say: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    source = "from the cache" if prompt.from_cache else "rendered"
    print(
        f"{args.output}: {prompt.duration_seconds:.2f} s, {prompt.sample_rate} Hz mono 16-bit, "
        f"voice {prompt.voice_id}, {source}"
    )
    return 0
