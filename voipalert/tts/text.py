"""Make untrusted text safe to speak.

Alert fields come from webhooks and e-mails (docs/architecture.md §11): they may hold control
characters, bidi overrides, HTML/SSML-like tags, Piper's raw-phoneme syntax (``[[ ... ]]``,
which would let a sender inject phonemes), or a megabyte of log output. Speech gets a clean,
bounded string; nothing is ever rejected for being odd.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Final

ELLIPSIS: Final = "…"
# Tags like <speak>, </b>, <break time="9s"/>, <!-- x -->; a lone "<" or "a < b" survives.
_TAG: Final = re.compile(r"<[/!?]?[A-Za-z][^<>]{0,500}>|<!--.*?-->", re.DOTALL)
_WHITESPACE: Final = re.compile(r"\s+")
# Terminal escape sequences (ANSI CSI/OSC) pasted from logs: drop them whole, not just ESC.
_ANSI: Final = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]{0,500}(?:\x07|\x1b\\)?)")
# Unicode categories never spoken: controls, format (bidi, zero-width), surrogates, private
# use, unassigned.
_DROPPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_SPACE_CONTROLS: Final = frozenset("\t\n\r\x0b\x0c\x85\u2028\u2029")


def _strip_controls(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text  # the common case: no control character, no space but " "
    return "".join(
        " " if ch in _SPACE_CONTROLS else ch
        for ch in text
        if ch in _SPACE_CONTROLS or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )


def clean_text(text: str) -> str:
    """NFKC, entities decoded, tags and phoneme brackets removed, controls dropped,
    whitespace collapsed."""
    # NFKC folds look-alikes (fullwidth letters, "℃") but would turn our own "…" into "...".
    parts = (unicodedata.normalize("NFKC", part) for part in text.split(ELLIPSIS))
    text = _ANSI.sub("", ELLIPSIS.join(parts))
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = text.replace("[", " ").replace("]", " ")
    text = _strip_controls(text)
    return _WHITESPACE.sub(" ", text).strip()


def truncate_spoken(text: str, max_chars: int) -> str:
    """Cut to ``max_chars`` characters (the ellipsis included), at a word boundary when one
    is near, and mark the cut with "…" (which Piper does not pronounce)."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return ELLIPSIS[:max_chars]
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    ends_a_word = text[max_chars - 1].isspace()
    if not ends_a_word and space >= max_chars * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def speakable(value: object, max_chars: int) -> str:
    """Any field value as clean text of at most ``max_chars`` characters."""
    return truncate_spoken(clean_text(value if isinstance(value, str) else str(value)), max_chars)
