"""The prompt catalogs shipped as package data (``en.toml``, ``fr.toml``)."""

from __future__ import annotations

import functools
from importlib import resources

from voipalert.tts.errors import TemplateConfigError
from voipalert.tts.templates import Catalog, parse_catalog
from voipalert.tts.voices import primary_language


@functools.cache
def available_languages() -> tuple[str, ...]:
    # Cached: every phrase of every call asks, on the event loop, and the package's files do
    # not change while it runs (a directory listing per phrase showed up as a loop stall).
    files = resources.files(__package__)
    return tuple(
        sorted(
            item.name.removesuffix(".toml")
            for item in files.iterdir()
            if item.name.endswith(".toml")
        )
    )


def load_catalog(language: str) -> Catalog:
    """The catalog for a language (``fr_FR`` uses ``fr``), or ``TemplateConfigError``."""
    primary = primary_language(language)
    if primary not in available_languages():
        raise TemplateConfigError(
            [
                f"no prompt catalog for language {language!r} "
                f"(available: {', '.join(available_languages())})"
            ]
        )
    return _load(primary)


@functools.cache
def _load(primary: str) -> Catalog:
    resource = resources.files(__package__).joinpath(f"{primary}.toml")
    return parse_catalog(resource.read_text("utf-8"), primary, source=f"catalog/{primary}.toml")
