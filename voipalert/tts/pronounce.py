"""Pronunciation: technical text → text Piper says clearly on the phone (pure).

Rules run in a fixed order over the parts of the text no earlier rule has rewritten (a
rewritten part is final, so "95 percent" is never re-read as something else):

1. site entries from the configuration (whole words, case-insensitive, longest first);
2. links (``https://…``) → "a link": nobody can take a URL down by ear;
3. IP addresses: ``10.1.2.30:8080`` → "10 dot 1 dot 2 dot 30 port 8080", IPv6 spelled;
4. numbers with units: ``95 %`` → "95 percent", ``3.5 GB`` → "3.5 gigabytes"; one-letter
   units must touch the number (``5s``, ``12V``) so "5 A" in a sentence stays alone;
5. host names and identifiers (``SRV-DB-01``, ``db01.example.com``): letters spelled,
   digits one by one, "." said as "dot"; plain hyphenated words are left alone;
6. all-caps abbreviations: a table says which are words ("RAM") and which are spelled
   ("CPU"); unknown ones without a vowel are spelled, others left to espeak;
7. French decimals and signs (``3.5`` → ``3,5``, ``-5`` → "moins 5"), ``#42``, ``&``, ``@``.

``Pronouncer.explain`` lists each rewrite with its rule, for ``voipalert say --explain``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from voipalert.tts.lexicon import ATTACHED_ONLY_UNITS, LEXICONS, SPELLED, Lexicon
from voipalert.tts.memo import BoundedMemo
from voipalert.tts.text import clean_text
from voipalert.tts.voices import primary_language

_VOWELS: Final = frozenset("aeiouyAEIOUY")
SPOKEN_MEMO_ENTRIES: Final = 1024  # texts whose spoken form is remembered, per language
_MINUS_SIGN: Final = "\u2212"
_URL: Final = re.compile(r"\b(?:https?|ftp)://[^\s<>\"']+")
_IPV4: Final = re.compile(
    r"(?<![\w.])(?P<ip>(?:\d{1,3}\.){3}\d{1,3})(?::(?P<port>\d{1,5}))?(?![\w]|\.\w)"
)
_IPV6: Final = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_NUMBER: Final = r"[-\u2212]?\d+(?:[.,]\d+)?"
_HOST: Final = re.compile(
    r"(?<![\w-])(?:[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)+|[A-Za-z]+[0-9][A-Za-z0-9]*)(?![\w-]|\.\w)"
)
_CAPS: Final = re.compile(r"(?<![\w-])[A-Z][A-Z0-9]*[A-Z](?![\w-])")
_DECIMAL: Final = re.compile(
    r"(?<![\w.,])(?P<sign>[-\u2212]?)(?P<int>\d+)(?:\.(?P<frac>\d+))?(?![\w]|[.,]\d)"
)
_NUMBER_SIGN: Final = re.compile(r"#(?=\d)")
_SEPARATOR: Final = re.compile(r"([-_.])")
_RUNS: Final = re.compile(r"[A-Za-z]+|[0-9]+")
_SPACES: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Change:
    original: str
    spoken: str
    rule: str


@dataclass(frozen=True, slots=True)
class Explanation:
    spoken: str
    changes: tuple[Change, ...]


_Rule = Callable[[re.Match[str]], str | None]
_Segment = tuple[str, bool]  # (text, already rewritten)


def supported_languages() -> tuple[str, ...]:
    return tuple(sorted(LEXICONS))


def _join(segments: list[_Segment]) -> str:
    """Concatenate, with a space where a rewrite and a letter or digit touch
    ("R&D" → "R and D") but none before punctuation ("95 %." → "95 percent.")."""
    out = ""
    previous_rewritten = False
    for text, rewritten in segments:
        if not text:
            continue
        if out and (rewritten or previous_rewritten) and out[-1].isalnum() and text[0].isalnum():
            out += " "
        out += text
        previous_rewritten = rewritten
    return out


class Pronouncer:
    """Pronunciation rules for one language, plus the site's own entries."""

    def __init__(self, language: str, site: Mapping[str, str] | None = None) -> None:
        lexicon = LEXICONS.get(primary_language(language))
        if lexicon is None:
            raise ValueError(
                f"no pronunciation rules for language {language!r} "
                f"(available: {', '.join(supported_languages())})"
            )
        self.lexicon: Lexicon = lexicon
        self._spoken: BoundedMemo[str, str] = BoundedMemo(SPOKEN_MEMO_ENTRIES)
        self._site = {key.casefold(): clean_text(value) for key, value in (site or {}).items()}
        keys = sorted((key for key in (site or {}) if key.strip()), key=len, reverse=True)
        self._site_pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, keys)) + r")(?!\w)", re.IGNORECASE)
            if keys
            else None
        )
        units = sorted(lexicon.units, key=len, reverse=True)
        self._unit_pattern = re.compile(
            rf"(?<![\w.,])(?P<num>{_NUMBER})(?P<space>[ \u00a0]?)"
            rf"(?P<unit>{'|'.join(map(re.escape, units))})(?![\w/])"
        )
        self._rules: tuple[tuple[str, re.Pattern[str], _Rule], ...] = (
            ("link", _URL, lambda _: lexicon.link),
            ("IP address", _IPV4, self._ipv4),
            ("IP address", _IPV6, self._ipv6),
            ("unit", self._unit_pattern, self._unit),
            ("host name", _HOST, self._host),
            ("abbreviation", _CAPS, self._abbreviation),
            ("number", _DECIMAL, self._decimal),
            ("symbol", _NUMBER_SIGN, lambda _: f" {lexicon.number_sign} "),
            *(
                ("symbol", re.compile(re.escape(symbol)), lambda _, w=word: f" {w} ")
                for symbol, word in lexicon.symbols.items()
            ),
        )

    # -- spoken forms ------------------------------------------------------------------

    def spell(self, letters: str) -> str:
        return " ".join(self.lexicon.letter_names.get(c.upper(), c.upper()) for c in letters)

    def digits(self, number: str) -> str:
        return " ".join(self.lexicon.digits[int(d)] for d in number)

    def number(self, text: str) -> str:
        """A number as written for this language's espeak voice (decimal comma, sign)."""
        text = text.replace(_MINUS_SIGN, "-")
        sign, body = ("-", text[1:]) if text.startswith("-") else ("", text)
        if self.lexicon.decimal_comma:
            body = body.replace(".", ",")
        if sign and self.lexicon.minus is not None:
            return f"{self.lexicon.minus} {body}"
        return sign + body

    def _letters(self, run: str) -> str:
        upper = run.upper()
        if upper in SPELLED:
            return self.spell(run)
        if upper in self.lexicon.said_as_word and not run.islower():
            return self.lexicon.said_as_word[upper]
        if run.lower() in self.lexicon.host_words:
            return run.lower()
        short = len(run) <= (2 if run.islower() else 3)
        if short or not _VOWELS.intersection(run):
            return self.spell(run)
        return run.lower()

    def _host_part(self, part: str) -> str:
        return " ".join(
            self.digits(run) if run.isdigit() else self._letters(run) for run in _RUNS.findall(part)
        )

    # -- rules -------------------------------------------------------------------------

    def _ipv4(self, match: re.Match[str]) -> str | None:
        try:
            ipaddress.IPv4Address(match["ip"])
        except ValueError:
            return None
        spoken = f" {self.lexicon.dot} ".join(match["ip"].split("."))
        if match["port"]:
            spoken += f" {self.lexicon.port} {match['port']}"
        return spoken

    def _ipv6(self, match: re.Match[str]) -> str | None:
        try:
            ipaddress.IPv6Address(match[0])
        except ValueError:
            return None
        groups = [self._host_part(group) for group in match[0].split(":")]
        return f" {self.lexicon.colon} ".join(groups).replace("  ", " ").strip()

    def _unit(self, match: re.Match[str]) -> str | None:
        unit = match["unit"]
        if match["space"] and unit in ATTACHED_ONLY_UNITS:
            return None
        raw = match["num"].replace(_MINUS_SIGN, "-")
        value = abs(float(raw.replace(",", "." if self.lexicon.decimal_comma else "")))
        singular = value < 2 if self.lexicon.singular_below_two else value == 1
        word = self.lexicon.units[unit][0 if singular else 1]
        return f"{self.number(raw)} {word}"

    def _host(self, match: re.Match[str]) -> str | None:
        token = match[0]
        pieces = _SEPARATOR.split(token)
        parts, separators = pieces[::2], pieces[1::2]
        if all(part.isdigit() for part in parts):
            if set(separators) != {"."}:
                return " ".join(parts)  # dates and serials: 2024-01-15 → 2024 01 15
            if len(parts) == 2:
                return None  # a decimal number: the number rule reads it
            return f" {self.lexicon.dot} ".join(parts)  # a version: 1.2.3
        if all(len(part) == 1 and part.isalpha() for part in parts):
            return None  # e.g, i.e: espeak knows them
        looks_technical = (
            any(ch.isdigit() for ch in token)
            or "." in separators
            or any(len(part) >= 2 and part.isupper() for part in parts)
        )
        if not looks_technical:
            return None  # an ordinary hyphenated word
        words = [self._host_part(parts[0])]
        for separator, part in zip(separators, parts[1:], strict=True):
            if separator == ".":
                words.append(self.lexicon.dot)
            words.append(self._host_part(part))
        return " ".join(words)

    def _abbreviation(self, match: re.Match[str]) -> str | None:
        token = match[0]
        if token in SPELLED:
            return self.spell(token)
        if token in self.lexicon.said_as_word:
            return self.lexicon.said_as_word[token]
        if not _VOWELS.intersection(token) and token.isalpha():
            return self.spell(token)
        return None

    def _decimal(self, match: re.Match[str]) -> str | None:
        spoken = self.number(match[0])
        return None if spoken == match[0] else spoken

    # -- engine ------------------------------------------------------------------------

    def _site_entry(self, match: re.Match[str]) -> str | None:
        return self._site.get(match[0].casefold())

    @staticmethod
    def _apply(
        segments: list[_Segment],
        pattern: re.Pattern[str],
        rule: _Rule,
        name: str,
        changes: list[Change],
    ) -> list[_Segment]:
        result: list[_Segment] = []
        for text, done in segments:
            if done:
                result.append((text, done))
                continue
            position = 0
            for match in pattern.finditer(text):
                spoken = rule(match)
                if spoken is None:
                    continue
                result.append((text[position : match.start()], False))
                result.append((_SPACES.sub(" ", spoken).strip(), True))
                changes.append(Change(match[0], _SPACES.sub(" ", spoken).strip(), name))
                position = match.end()
            result.append((text[position:], False))
        return result

    def explain(self, text: str) -> Explanation:
        """The spoken form of ``text`` and every rewrite that produced it."""
        changes: list[Change] = []
        cleaned = clean_text(text)
        segments: list[_Segment] = [(cleaned, False)]
        if self._site_pattern is not None:
            segments = self._apply(segments, self._site_pattern, self._site_entry, "site", changes)
        for name, pattern, rule in self._rules:
            segments = self._apply(segments, pattern, rule, name, changes)
        spoken = _SPACES.sub(" ", _join(segments)).strip()
        changes.sort(key=lambda change: cleaned.find(change.original))
        return Explanation(spoken, tuple(changes))

    def spoken(self, text: str) -> str:
        # The rules are fixed once built: the spoken form is memoised (voipalert/tts/memo.py).
        return self._spoken.get(text, lambda: self.explain(text).spoken)
