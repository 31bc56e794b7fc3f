"""The web console of a real ``voipalert serve`` process, in a real browser (Debian's
Chromium through Playwright), against the testbed: an alert fired through the Alertmanager
webhook appears on the board with the bot being called; acknowledging it from the page while
that bot's phone rings cancels the call (the bot sees it close) and nobody else is called.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from testbed import BotSpec, Testbed

from tests.browser import system_chromium, watched_context
from tests.conftest import TestbedFactory
from tests.e2e.server import Server, rota_yaml, running_server, team_rota

PASSWORD = "a console passphrase"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with system_chromium() as launched:
        yield launched


def add_user(server: Server, name: str, role: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voipalert", "user", "add", name, "--role", role,
         "--password-stdin"],
        env=server.env, cwd=server.directory, input=PASSWORD + "\n", capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def alertmanager(summary: str) -> dict[str, object]:
    labels = {"alertname": "PumpDown", "instance": "pump-3", "severity": "critical"}
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": summary},
             "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "c0ffee0000000001"}  # fmt: skip
    return {"version": "4", "status": "firing", "receiver": "voipalert", "alerts": [alert],
            "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://am.invalid",
            "groupKey": f"{{}}:{alert['fingerprint']}"}  # fmt: skip


async def test_ack_from_the_page_cancels_the_ringing_call(
    testbed: Testbed, browser: Browser, tmp_path: Path, cache: Path
) -> None:
    # the first person's phone rings (and would ring for 40 s); the second would answer
    rota = rota_yaml(testbed, "noanswer", "ack", ring=40)
    async with running_server(testbed, rota, tmp_path, cache) as server:
        await asyncio.to_thread(add_user, server, "noanswer-person", "admin")
        context, watch = await watched_context(browser)
        page = await context.new_page()
        await page.goto(server.url + "/")
        await page.fill("input[name=name]", "noanswer-person")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button:has-text('Log in')")
        await expect(page.locator("#live")).to_be_visible()

        since = len(testbed.events("noanswer"))
        ack_before = len(testbed.events("ack"))
        status, body = await server.request(
            "POST", "/api/v1/hooks/alertmanager", alertmanager("Pump 3 stopped")
        )
        assert status == 202, body
        alert_id = body["results"][0]["id"]
        row = page.locator(f"tr[data-alert='{alert_id}']")
        await expect(row.locator("td.summary")).to_have_text("Pump 3 stopped", timeout=10_000)
        ringing = row.locator("td.calling .call.calling")
        await expect(ringing).to_have_text("noanswer-person (calling)", timeout=20_000)
        assert await asyncio.to_thread(testbed.wait_event, "noanswer", "CALL_INCOMING", since, 10)
        await page.screenshot(path=tmp_path / "board-calling.png", full_page=True)

        await row.locator("a:has-text('Acknowledge')").click()
        await page.click("#confirm")
        await expect(page.locator("dd.status")).to_have_text("acknowledged")
        # the ringing phone stops ringing: its call is cancelled, not left to time out
        assert await asyncio.to_thread(testbed.wait_event, "noanswer", "CALL_CLOSED", since, 10)
        alert = await server.wait_alert(alert_id, "acknowledged", 10)
        assert alert["acknowledged_by"] == "noanswer-person"
        async with asyncio.timeout(15):
            while any(a["outcome"] is None for a in alert["attempts"]):
                await asyncio.sleep(0.25)
                alert = await server.alert(alert_id)
        assert [(a["person"], a["outcome"]) for a in alert["attempts"]] == [
            ("noanswer-person", "cancelled")
        ]
        await page.reload()
        await expect(page.locator("td.outcome")).to_have_text("cancelled")
        # what the call said: the words, and the prompt from serve's own speech to play
        await expect(page.locator("figure.spoken q")).to_have_text("critical alert. Pump 3 stopped")
        audio = await page.locator("figure.spoken audio").get_attribute("src")
        assert audio == f"/alerts/{alert_id}/prompt.wav?lang=en"
        wav = await page.request.get(server.url + audio)
        assert wav.ok and wav.headers["content-type"] == "audio/wav"
        body = await wav.body()
        assert body[:4] == b"RIFF" and body[8:12] == b"WAVE" and len(body) > 8000
        await page.screenshot(path=tmp_path / "alert-acked.png", full_page=True)
        await asyncio.sleep(2)
        assert len(testbed.events("ack")) == ack_before  # nobody else was called
        # the admin page: registration as /readyz says, settings with secrets masked
        await page.goto(server.url + "/admin")
        await expect(page.locator("#readiness")).to_contain_text("registered")
        settings = await page.locator("#settings").inner_text()
        assert '"password": "**********"' in settings
        assert testbed.users["voipalert"] not in settings
        # the test call button: the bot that presses 1 is called, the report is shown
        await page.fill("#test-call input[name=target]", testbed.uri("ack"))
        await page.click("#test-call button")
        await expect(page.locator("#call-report")).to_contain_text("acknowledged", timeout=60_000)
        assert len(testbed.events("ack")) > ack_before
        await page.screenshot(path=tmp_path / "admin-test-call.png", full_page=True)
        await context.close()
        assert watch.problems == []
        assert server.stop() == 0


async def test_mass_alert_from_the_page_shows_each_outcome_live(
    testbed_factory: TestbedFactory, browser: Browser, tmp_path: Path, cache: Path
) -> None:
    tb = testbed_factory([BotSpec("ack", "dtmf"), BotSpec("ack2", "dtmf", "1", 2.0),
                          BotSpec("busy", "busy")])  # fmt: skip
    async with running_server(tb, team_rota(tb, ["ack", "ack2", "busy"]), tmp_path, cache) as s:
        await asyncio.to_thread(add_user, s, "duty-manager", "manager")
        context, watch = await watched_context(browser)
        page = await context.new_page()
        await page.goto(s.url + "/mass")
        await page.fill("input[name=name]", "duty-manager")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button:has-text('Log in')")
        await expect(page.locator("h1")).to_have_text("Mass alert")
        await page.select_option("select[name=team]", "everyone")
        await page.fill("textarea[name=message]", "Evacuate hall B")
        await page.click("button:has-text('Hear it first')")
        await expect(page.locator("#preview q")).to_have_text("critical alert. Evacuate hall B")
        src = await page.locator("#preview audio").get_attribute("src")
        assert src is not None
        wav = await page.request.get(s.url + src)
        assert wav.ok and (await wav.body())[:4] == b"RIFF"
        assert len(tb.events("ack")) == 0  # hearing it first calls nobody
        await page.click("button:has-text('Launch')")
        await expect(page.locator("h1")).to_contain_text("Evacuate hall B")
        totals = page.locator("p.totals")  # updated by the stream, no reload
        await expect(totals).to_contain_text("acknowledged: 2", timeout=60_000)
        await expect(totals).to_contain_text("busy: 1", timeout=60_000)
        outcomes = await page.locator("td.outcome").all_inner_texts()
        assert sorted(outcomes) == ["acknowledged", "acknowledged", "busy"]
        await expect(page.locator("table.timeline")).to_contain_text("attempt.ended")
        await page.screenshot(path=tmp_path / "mass-alert.png", full_page=True)
        await context.close()
        assert watch.problems == []


def two_at_once_rota(testbed: Testbed, bots: list[str]) -> str:
    """One step that calls two people at once (a team target), ringing 40 s."""
    people = "".join(
        f"  - name: {bot}-person\n    language: en\n"
        f"    contacts:\n      - sip: {testbed.uri(bot)}\n"
        for bot in bots
    )
    members = ", ".join(f"{bot}-person" for bot in bots)
    return (
        f"version: 1\npeople:\n{people}teams:\n  - name: duty\n    members: [{members}]\n"
        "policies:\n  - name: page\n    steps:\n      - targets:\n          - team: duty\n"
        "        timeout: 120s\n        ring_timeout: 40s\n"
        "routes:\n  - name: all\n    default: true\n    policy: page\n    team: duty\n"
    )


async def test_ack_from_the_page_while_another_phone_rings(
    testbed: Testbed, browser: Browser, tmp_path: Path, cache: Path
) -> None:
    """The voicemail bot answers (and hears the message), the other bot's phone rings; an
    acknowledgement from the page ends both calls, the ringing one cancelled."""
    rota = two_at_once_rota(testbed, ["voicemail", "noanswer"])
    async with running_server(testbed, rota, tmp_path, cache) as server:
        await asyncio.to_thread(add_user, server, "voicemail-person", "responder")
        context, watch = await watched_context(browser)
        page = await context.new_page()
        await page.goto(server.url + "/")
        await page.fill("input[name=name]", "voicemail-person")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button:has-text('Log in')")
        await expect(page.locator("#live")).to_be_visible()
        ringing_since = len(testbed.events("noanswer"))
        answered_since = len(testbed.events("voicemail"))
        status, body = await server.request(
            "POST", "/api/v1/hooks/alertmanager", alertmanager("Boiler pressure high")
        )
        assert status == 202, body
        alert_id = body["results"][0]["id"]
        row = page.locator(f"tr[data-alert='{alert_id}']")
        calling = row.locator("td.calling .call.calling")
        await expect(calling).to_have_text(
            ["voicemail-person (calling)", "noanswer-person (calling)"], timeout=20_000
        )
        assert await asyncio.to_thread(
            testbed.wait_event, "voicemail", "CALL_ESTABLISHED", answered_since, 15
        )
        assert await asyncio.to_thread(
            testbed.wait_event, "noanswer", "CALL_INCOMING", ringing_since, 5
        )
        await page.screenshot(path=tmp_path / "two-calls.png", full_page=True)
        await row.locator("a:has-text('Acknowledge')").click()
        await page.click("#confirm")
        await expect(page.locator("dd.status")).to_have_text("acknowledged")
        assert await asyncio.to_thread(
            testbed.wait_event, "noanswer", "CALL_CLOSED", ringing_since, 10
        )
        assert await asyncio.to_thread(
            testbed.wait_event, "voicemail", "CALL_CLOSED", answered_since, 15
        )
        alert = await server.wait_alert(alert_id, "acknowledged", 10)
        async with asyncio.timeout(20):
            while any(a["outcome"] is None for a in alert["attempts"]):
                await asyncio.sleep(0.25)
                alert = await server.alert(alert_id)
        outcomes = {a["person"]: a["outcome"] for a in alert["attempts"]}
        assert outcomes["noanswer-person"] == "cancelled", outcomes
        assert alert["acknowledged_by"] == "voicemail-person"
        await context.close()
        assert watch.problems == []
        assert server.stop() == 0
