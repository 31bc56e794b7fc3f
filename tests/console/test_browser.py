"""The console in a real browser: Debian's Chromium driven by Playwright (launched from the
system executable; no browser is downloaded). Log in, see an alert fired through the
Alertmanager webhook appear on the board without a reload, acknowledge it from the page, and
the French UI. Screenshots go to the test's tmp dir (``pytest --basetemp DIR`` keeps them
somewhere known); no page may log a Content-Security-Policy violation or open a dialog (an
alert text that ran as script would)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import system_chromium, watched_context
from tests.console.conftest import PASSWORD, Console
from tests.console.test_security import XSS_LABEL, XSS_SUMMARY
from voipalert.clock import SystemClock

# Next January: a winter night (CET) that is always ahead, so the overrides are accepted.
YEAR = SystemClock().now_utc().year + 1

pytestmark = pytest.mark.slow


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with system_chromium() as launched:
        yield launched


async def _login(page: Page, console: Console, name: str, submit: str = "Log in") -> None:
    await page.goto(console.base + "/")
    await expect(page).to_have_url(console.base + "/login?next=%2F")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click(f"button:has-text('{submit}')")
    await expect(page).to_have_url(console.base + "/")


async def test_login_live_alert_and_ack(console: Console, browser: Browser, tmp_path: Path) -> None:
    context, watch = await watched_context(browser)
    page = await context.new_page()
    await _login(page, console, "alice")
    await expect(page.locator("h1")).to_contain_text("Open alerts")
    await expect(page.locator("#live")).to_be_visible()  # the stream is connected
    await page.screenshot(path=tmp_path / "1-board-empty.png", full_page=True)

    alert_id = await console.fire(XSS_SUMMARY, instance=XSS_LABEL)
    row = page.locator(f"tr[data-alert='{alert_id}']")
    await expect(row).to_be_visible(timeout=10_000)  # no reload: pushed by the stream
    await expect(row.locator("td.summary")).to_have_text(XSS_SUMMARY)
    await expect(row.locator("td.status")).to_have_text("triggered")
    await page.screenshot(path=tmp_path / "2-board-live-alert.png", full_page=True)

    await row.locator("a:has-text('Acknowledge')").click()
    await expect(page.locator("h1")).to_contain_text(f"Acknowledge alert #{alert_id}?")
    await page.screenshot(path=tmp_path / "3-confirm.png", full_page=True)
    await page.click("#confirm")
    await expect(page).to_have_url(f"{console.base}/alerts/{alert_id}?done=ack")
    await expect(page.locator("p.done")).to_have_text(f"Alert #{alert_id} acknowledged.")
    await expect(page.locator("dd.status")).to_have_text("acknowledged")
    await expect(page.locator("p.acked")).to_contain_text("Acknowledged by alice via console")
    await expect(page.locator("dl.labels dd", has_text="svg")).to_have_text(XSS_LABEL)
    await expect(page.locator("pre.payload")).to_contain_text("<script>alert(1)</script>")
    await page.screenshot(path=tmp_path / "4-alert-acknowledged.png", full_page=True)

    await page.goto(console.base + "/")
    await expect(row.locator("td.status")).to_contain_text("acknowledged (alice)")
    alert = await console.store.get_alert(alert_id)
    assert alert is not None and alert.acked_by == "alice"
    await context.close()
    assert watch.problems == []


async def test_french_ui(console: Console, browser: Browser, tmp_path: Path) -> None:
    context, watch = await watched_context(browser, locale="fr-FR")
    page = await context.new_page()
    await console.fire("Compresseur 2 arrêté")
    await _login(page, console, "viewer", submit="Connexion")
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    await expect(page.locator("h1")).to_contain_text("Alertes ouvertes")
    await expect(page.locator("td.status").first).to_have_text("déclenchée")
    await page.screenshot(path=tmp_path / "5-board-fr.png", full_page=True)
    await page.click("nav >> text=Astreinte")
    await expect(page.locator("h1")).to_have_text("Qui est d'astreinte")
    await page.screenshot(path=tmp_path / "6-oncall-fr.png", full_page=True)
    await page.click("text=English")
    await expect(page.locator("h1")).to_have_text("Who is on call")
    await context.close()
    assert watch.problems == []


async def test_rota_edit_and_override(console: Console, browser: Browser, tmp_path: Path) -> None:
    context, watch = await watched_context(browser)
    page = await context.new_page()
    await _login(page, console, "manager")
    await page.click("nav >> text=Rota")
    editor = page.locator("form#edit textarea")
    text = await editor.input_value()
    await editor.fill(text.replace("    - bob\n", "    - bobby\n", 1))
    await page.click("text=Check and preview")
    await expect(page.locator("ul.problems li")).to_contain_text("no person named 'bobby'")
    await expect(page.locator("ul.problems li")).to_contain_text("line 24: ")
    await page.screenshot(path=tmp_path / "7-rota-error.png", full_page=True)
    await editor.fill(text.replace("    - alice\n    - bob\n", "    - bob\n    - alice\n", 1))
    await page.click("text=Check and preview")
    await expect(page.locator("section.preview h3")).to_contain_text("primary")
    await page.screenshot(path=tmp_path / "8-rota-preview.png", full_page=True)
    await page.click("form#apply button")
    await expect(page.locator("p.done")).to_have_text("The rota was applied.")
    assert (await console.store.load_rota()).schedules[0].layers[0].members == ("bob", "alice")

    await page.click("nav >> text=On call")
    form = page.locator("form#add-override")
    await form.locator("select[name=person]").select_option("alice")
    await form.locator("input[name=start]").fill(f"{YEAR}-01-05T20:00")
    await form.locator("input[name=end]").fill(f"{YEAR}-01-06T08:00")
    await form.locator("button").click()
    await expect(page.locator("p.done")).to_have_text("Override added.")
    await page.fill("input[name=at]", f"{YEAR}-01-05T22:00")
    await page.click("button:has-text('Show')")
    await expect(page.locator("p.whatif code")).to_contain_text(
        f"primary: at {YEAR}-01-05 22:00 CET: alice (override, {YEAR}-01-05 20:00 CET → "
    )
    await page.screenshot(path=tmp_path / "9-oncall-override.png", full_page=True)
    await context.close()
    # the refused preview is a 422, which Chromium reports; nothing else may be
    assert [p for p in watch.problems if "status of 422" not in p] == []
