"""A real browser for the tests: Debian's ``chromium`` driven by Playwright, launched from the
system executable (no browser download is possible or wanted). Missing chromium skips the
test, except in CI where it fails (sip-testbed/install-deps.sh --tests installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright


@asynccontextmanager
async def system_chromium() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        message = "Debian's chromium is missing; install: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            await launched.close()


class Watch:
    """Everything a page says that a test must not ignore: a dialog (an alert text that ran
    as script would open one), console errors and warnings (a CSP violation is one), page
    errors."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, page: Page) -> None:
        page.on("dialog", lambda d: self.problems.append(f"dialog: {d.message}"))
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))


async def watched_context(browser: Browser, locale: str = "en-GB") -> tuple[BrowserContext, Watch]:
    context = await browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    watch = Watch()
    context.on("page", watch.attach)
    return context, watch
