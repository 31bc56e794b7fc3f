"""What the pages show and do: the board updated live over server-sent events, an alert's
calls and timeline, acknowledge and resolve with their confirmation, "who is on call" with
the CLI's answers, overrides with the CLI's validation, and French."""

from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from tests.console.conftest import CSRF, Console, ConsoleFactory
from tests.console.test_security import read_event
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertId, AttemptKey, AttemptOutcome, AttemptResult
from voipalert.domain.override_edit import Origin, OverrideRequest
from voipalert.domain.policy import PlaceCall
from voipalert.domain.rota import Contact, ContactKind

# Next January: a winter night (CET) that is always ahead, so the overrides are accepted.
YEAR = SystemClock().now_utc().year + 1

REPO = Path(__file__).resolve().parents[2]


async def test_board_stream_pushes_a_new_alert(console: Console) -> None:
    client = await console.login("viewer")
    async with asyncio.timeout(15):
        async with client.get(console.base + "/events") as response:
            first = await read_event(response, "board")
            assert "No open alert." in first
            alert_id = await console.fire("Pump 3 pressure low")
            update = await read_event(response, "board")
    assert "Pump 3 pressure low" in update
    assert f'href="/alerts/{alert_id}"' in update
    assert "Acknowledge" not in update  # a viewer gets no buttons


async def test_stream_needs_a_session_and_ends_with_it(console: Console) -> None:
    anonymous = console.client()
    async with anonymous.get(console.base + "/events") as response:
        assert response.status == 401
    client = await console.login("viewer")
    async with asyncio.timeout(15):
        async with client.get(console.base + "/events") as response:
            await read_event(response, "board")
            await console.users.set_password("viewer", "scrypt$x", "test")  # ends sessions
            assert await read_event(response, "logout") == "/login"


async def _call(console: Console, alert_id: int) -> None:
    """One call as the engine records it: intent, dial, answered, key 1."""
    rota = await console.store.load_rota()
    alice = rota.person("alice")
    assert alice is not None
    alert = await console.store.get_alert(alert_id)
    assert alert is not None
    key = AttemptKey(AlertId(alert_id), 0, 0, alice.name, 1)
    call = PlaceCall(key, alice, 0, Contact(ContactKind.EXTENSION, "201"), 30)
    attempt = await console.store.record_intent(call)
    assert attempt is not None
    assert await console.store.start_attempt(attempt.id)
    now = alert.created_at + timedelta(seconds=5)
    result = AttemptResult(
        AttemptOutcome.ACKNOWLEDGED, now + timedelta(seconds=9), 200, "OK", "1",
        answered_at=now + timedelta(seconds=3), detail="rfc4733",
    )  # fmt: skip
    await console.store.finish_attempt(attempt.id, result)


async def test_alert_page_shows_calls_and_timeline(console: Console) -> None:
    alert_id = await console.fire("Boiler trip", instance="boiler-1")
    await _call(console, alert_id)
    client = await console.login("viewer")
    status, page, _ = await console.get(client, f"/alerts/{alert_id}")
    assert status == 200
    for expected in ("Boiler trip", "extension: 201", "200 OK", "rfc4733", "attempt.intent",
                     "alert.created", "boiler-1", "alertmanager"):  # fmt: skip
        assert expected in page, expected
    status, _, _ = await console.get(client, "/alerts/999999")
    assert status == 404


async def test_ack_then_resolve_from_the_pages(console: Console) -> None:
    alert_id = await console.fire("Chiller offline")
    client = await console.login("alice")
    status, board, _ = await console.get(client, "/")
    assert f'href="/alerts/{alert_id}/ack"' in board
    status, confirm, _ = await console.get(client, f"/alerts/{alert_id}/ack")
    assert status == 200 and "Acknowledge alert #" in confirm
    csrf = await console.csrf(client, f"/alerts/{alert_id}/ack")
    status, _, response = await console.post(client, f"/alerts/{alert_id}/ack", {"csrf": csrf})
    assert status == 303
    status, page, _ = await console.get(client, response.headers["Location"])
    assert f"Alert #{alert_id} acknowledged." in page
    assert "Acknowledged by alice via console" in page
    status, page, _ = await console.post(client, f"/alerts/{alert_id}/ack", {"csrf": csrf})
    assert status == 409 and "was already acknowledged" in page
    status, _, _ = await console.post(client, f"/alerts/{alert_id}/resolve", {"csrf": csrf})
    assert status == 303
    alert = await console.store.get_alert(alert_id)
    assert alert is not None and alert.status.value == "resolved" and alert.resolved_by == "alice"


def _cli_oncall(db: Path, at: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env["VOIPALERT_DATABASE__PATH"] = str(db)
    result = subprocess.run(
        [sys.executable, "-m", "voipalert", "oncall", "--at", at], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip()


async def test_oncall_what_if_agrees_with_the_cli(console: Console, tmp_path: Path) -> None:
    client = await console.login("alice")
    csrf = await console.csrf(client, "/oncall")
    form = {"csrf": csrf, "schedule": "primary", "person": "alice",
            "start": f"{YEAR}-01-05T20:00", "end": f"{YEAR}-01-06T08:00"}  # fmt: skip
    status, page, response = await console.post(client, "/oncall/overrides", form)
    assert status == 303, page
    status, page, _ = await console.get(client, response.headers["Location"])
    assert "Override added." in page
    for at in (f"{YEAR}-01-05T22:00", f"{YEAR}-01-06T09:30", f"{YEAR}-01-05T19:00+00:00"):
        status, page, _ = await console.get(client, f"/oncall?at={quote(at)}")
        expected = await asyncio.to_thread(_cli_oncall, tmp_path / "console0.db", at)
        assert expected.startswith("primary: at ")
        assert f"<code>{expected}</code>" in page, (at, expected)
    trail = await console.store.audit_trail()
    assert any(e.action == "override.added" and e.actor == "alice" for e in trail)


async def test_override_validation_is_the_clis(console: Console) -> None:
    client = await console.login("manager")
    csrf = await console.csrf(client, "/oncall")
    bad = {"csrf": csrf, "schedule": "primary", "person": "bob",
           "start": f"{YEAR}-01-06T08:00", "end": f"{YEAR}-01-05T20:00"}  # fmt: skip
    status, page, _ = await console.post(client, "/oncall/overrides", bad)
    assert status == 422 and "must be after start" in page
    status, page, _ = await console.post(client, "/oncall/overrides", {**bad, "end": "soon"})
    assert status == 422 and "expected a date and time" in page
    status, page, _ = await console.post(client, "/oncall/overrides", {**bad, "person": "zoe"})
    assert status == 422 and "no person named &#39;zoe&#39;" in page
    assert not (await console.store.load_rota()).overrides


async def test_responder_may_only_change_their_own_overrides(console: Console) -> None:
    client = await console.login("alice")
    csrf = await console.csrf(client, "/oncall")
    form = {"csrf": csrf, "schedule": "primary", "person": "bob",
            "start": f"{YEAR}-01-05T20:00", "end": f"{YEAR}-01-06T08:00"}  # fmt: skip
    status, page, _ = await console.post(client, "/oncall/overrides", form)
    assert status == 403 and "your own overrides" in page
    manager = await console.login("manager")
    manager_csrf = await console.csrf(manager, "/oncall")
    status, _, _ = await console.post(manager, "/oncall/overrides", {**form, "csrf": manager_csrf})
    assert status == 303
    _, page, _ = await console.get(client, "/oncall")
    assert "/oncall/overrides/remove" not in page  # bob's: no remove button for alice
    rota = await console.store.load_rota()
    assert [o.person for o in rota.overrides] == ["bob"]
    _, page, _ = await console.get(manager, "/oncall")
    fingerprint = page.split('name="override" value="')[1].split('"')[0]
    status, _, _ = await console.post(
        client, "/oncall/overrides/remove", {"csrf": csrf, "override": fingerprint}
    )
    assert status == 403
    status, _, _ = await console.post(
        manager, "/oncall/overrides/remove", {"csrf": manager_csrf, "override": fingerprint}
    )
    assert status == 303
    assert not (await console.store.load_rota()).overrides


async def test_french_from_the_browser_or_chosen(console: Console) -> None:
    await console.fire("Compresseur arrêté")
    client = await console.login("viewer")
    status, page, _ = await console.get(client, "/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert 'lang="fr"' in page and "Alertes ouvertes" in page and "critique" in page
    status, page, _ = await console.get(client, "/?lang=en", headers={"Accept-Language": "fr"})
    assert 'lang="en"' in page and "Open alerts" in page
    # the choice sticks (cookie, and the account) over the browser's language
    status, page, _ = await console.get(client, "/oncall", headers={"Accept-Language": "fr"})
    assert 'lang="en"' in page
    status, page, _ = await console.get(client, "/?lang=fr")
    assert status == 200 and "Alertes ouvertes" in page
    anonymous = console.client()
    _, page, _ = await console.get(anonymous, "/login", headers={"Accept-Language": "fr"})
    assert "Mot de passe" in page


async def test_board_filters_page_and_stream(console: Console) -> None:
    await console.fire("Tank level high", severity="warning")
    await console.fire("Reactor overheating", severity="critical")
    client = await console.login("viewer")
    _, page, _ = await console.get(client, "/?severity=warning")
    assert "Tank level high" in page and "Reactor overheating" not in page
    _, page, _ = await console.get(client, "/?team=ops&source=alertmanager")
    assert "Tank level high" in page and "Reactor overheating" in page
    _, page, _ = await console.get(client, "/?source=email")
    assert "Tank level high" not in page and "No open alert." in page
    async with asyncio.timeout(15):
        async with client.get(console.base + "/events?severity=critical") as response:
            rows = await read_event(response, "board")
    assert "Reactor overheating" in rows and "Tank level high" not in rows


async def test_admin_manages_users_from_the_console(console: Console) -> None:
    client = await console.login("admin")
    csrf = await console.csrf(client, "/admin/users")
    status, page, _ = await console.post(
        client, "/admin/users", {"csrf": csrf, "action": "add", "name": "zoe", "role": "manager"}
    )
    assert status == 200, page
    secret = page.split('id="secret"')[1].split("<code>")[1].split("</code>")[0]
    await console.login("zoe", secret)
    zoe = await console.users.get_user("zoe")
    assert zoe is not None and zoe.role.label == "manager"
    status, _, _ = await console.post(
        client, "/admin/users", {"csrf": csrf, "action": "role", "name": "zoe", "role": "viewer"}
    )
    assert status == 200
    status, page, _ = await console.post(
        client, "/admin/users", {"csrf": csrf, "action": "remove", "name": "admin",
                                 "role": "admin"}
    )  # fmt: skip
    assert status == 409 and "yourself" in page
    status, _, _ = await console.post(
        client, "/admin/users", {"csrf": csrf, "action": "remove", "name": "zoe", "role": "viewer"}
    )
    assert status == 200
    assert await console.users.get_user("zoe") is None
    actions = [(e.actor, e.action) for e in await console.store.audit_trail()]
    for action in ("user.added", "user.role_set", "user.removed"):
        assert ("admin", action) in actions


async def test_open_streams_do_not_hold_up_shutdown(console: Console) -> None:
    client = await console.login("viewer")
    async with client.get(console.base + "/events") as response:
        await read_event(response, "board")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await console.runner.cleanup()  # what serve does at SIGTERM
        assert loop.time() - started < 2.0


async def test_rota_text_edit_error_preview_apply(console: Console) -> None:
    client = await console.login("manager")
    status, page, _ = await console.get(client, "/rota")
    assert status == 200
    csrf = CSRF.search(page)
    version = re.search(r'name="version" value="(\d+)"', page)
    assert csrf is not None and version is not None
    text = html.unescape(page.split('aria-label="Rota">')[1].split("</textarea>")[0])
    assert "    members:\n    - alice\n    - bob\n" in text  # the layer
    form = {"csrf": csrf.group(1), "version": version.group(1)}
    # an error: a person the rota does not have, reported with its line
    broken = text.replace("    - bob\n", "    - bobby\n", 1)
    line = broken[: broken.index("bobby")].count("\n") + 1
    status, page, _ = await console.post(client, "/rota/preview", {**form, "text": broken})
    assert status == 422
    assert (
        f"line {line}: schedules[0].layers[0].members[1]: " in page
        and "no person named &#39;bobby&#39;" in page
    )
    assert (await console.store.load_rota()).schedules[0].layers[0].members == ("alice", "bob")
    # a valid change: bob first; the preview shows who is on call differently
    swapped = text.replace("    - alice\n    - bob\n", "    - bob\n    - alice\n", 1)
    assert swapped != text
    status, page, _ = await console.post(client, "/rota/preview", {**form, "text": swapped})
    assert status == 200, page
    assert "Who is on call changes in the next 14 days" in page and "<h3>primary" in page
    assert (await console.store.load_rota()).schedules[0].layers[0].members == ("alice", "bob")
    status, _, response = await console.post(client, "/rota/apply", {**form, "text": swapped})
    assert status == 303 and response.headers["Location"] == "/rota?done=applied"
    assert (await console.store.load_rota()).schedules[0].layers[0].members == ("bob", "alice")
    trail = await console.store.audit_trail()
    assert (trail[-1].actor, trail[-1].action) == ("manager", "rota.imported")
    # applying the same preview again: the rota changed since, so it is refused
    status, page, _ = await console.post(client, "/rota/apply", {**form, "text": text})
    assert status == 409 and "changed by someone else" in page
    assert (await console.store.load_rota()).schedules[0].layers[0].members == ("bob", "alice")


async def test_admin_service_page_tokens_and_settings(make_console: ConsoleFactory) -> None:
    console = await make_console()
    client = await console.login("admin")
    status, page, _ = await console.get(client, "/admin")
    assert status == 200 and "registered" in page and "monitoring" in page
    csrf = await console.csrf(client, "/admin")
    form = {"csrf": csrf, "action": "create", "name": "grafana", "scope": "trigger"}
    status, page, _ = await console.post(client, "/admin/tokens", form)
    assert status == 200, page
    secret = page.split('id="token-secret"')[1].split("<code>")[1].split("</code>")[0]
    assert secret.startswith("va_") and "vas_" in page  # and its signing secret
    api = console.client(Authorization=f"Bearer {secret}")
    async with api.post(
        console.base + "/api/v1/alerts", json={"summary": "via the new token"}
    ) as r:
        assert r.status == 202
    status, _, _ = await console.post(client, "/admin/tokens", form)
    assert status == 409  # the name is taken
    status, _, _ = await console.post(
        client, "/admin/tokens", {"csrf": csrf, "action": "revoke", "name": "grafana"}
    )
    assert status == 200
    actions = [(e.actor, e.action) for e in await console.store.audit_trail()]
    assert ("admin", "token.created") in actions and ("admin", "token.revoked") in actions


async def test_mass_alert_launch_and_live_calls(console: Console) -> None:
    client = await console.login("manager")
    status, page, _ = await console.get(client, "/mass")
    assert status == 200 and "ops (2)" in page
    csrf = await console.csrf(client, "/mass")
    form = {"csrf": csrf, "team": "ops", "severity": "critical", "message": "Evacuate hall B"}
    status, _, response = await console.post(client, "/mass", form)
    assert status == 303
    alert_id = int(response.headers["Location"].rsplit("/", 1)[1])
    alert = await console.store.get_alert(alert_id)
    assert alert is not None and alert.kind.value == "mass" and alert.team == "ops"
    assert console.woken
    trail = await console.store.audit_trail(AlertId(alert_id))
    assert ("manager", "console.mass_alert") in [(e.actor, e.action) for e in trail]
    # the alert's page follows its calls live: a call recorded now is pushed
    async with asyncio.timeout(15):
        async with client.get(f"{console.base}/events?alert={alert_id}") as events:
            first = await read_event(events, "calls")
            assert "No call yet." in first
            await _call(console, alert_id)
            update = await read_event(events, "calls")
    assert "acknowledged: 1" in update and "alice" in update
    status, _, _ = await console.post(client, "/mass", {**form, "team": "nobody"})
    assert status == 422


async def test_alert_page_says_what_the_calls_say(console: Console) -> None:
    alert_id = await console.fire("Boiler <2> trip")
    await _call(console, alert_id)  # alice's call is in English
    client = await console.login("viewer")
    _, page, _ = await console.get(client, f"/alerts/{alert_id}")
    assert "What the calls say" in page
    assert "<q>critical alert. Boiler &lt;2&gt; trip</q>" in page
    assert "<audio" not in page  # no speech engine outside serve: text only
    status, _, _ = await console.get(client, f"/alerts/{alert_id}/prompt.wav?lang=en")
    assert status == 503


async def test_mass_alert_preview_shows_the_words(console: Console) -> None:
    client = await console.login("manager")
    csrf = await console.csrf(client, "/mass")
    form = {"csrf": csrf, "team": "ops", "severity": "warning", "message": "Évacuez le hall B",
            "lang": "fr", "action": "preview"}  # fmt: skip
    status, page, _ = await console.post(client, "/mass", form)
    assert status == 200 and 'id="preview"' in page and "Évacuez le hall B" in page
    assert not (await console.store.list_alerts()).alerts  # a preview launches nothing


async def test_board_puts_the_most_urgent_first(console: Console) -> None:
    info = await console.fire("Disk 80 percent", severity="info")
    critical = await console.fire("Line 2 stopped", severity="critical")
    warning = await console.fire("Fan noisy", severity="warning")
    acked = await console.fire("Old critical", severity="critical")
    await console.store.ack_alert(acked, by="alice", via="test")
    client = await console.login("viewer")
    _, page, _ = await console.get(client, "/")
    order = [int(x) for x in re.findall(r'data-alert="(\d+)"', page)]
    assert order == [critical, warning, info, acked]


async def test_unknown_pages_are_pages_and_api_errors_stay_json(console: Console) -> None:
    client = console.client()
    html_accept = {"Accept": "text/html,application/xhtml+xml"}
    status, page, response = await console.get(client, "/no/such/page", headers=html_accept)
    assert status == 404 and response.content_type == "text/html" and "Not found" in page
    status, _, response = await console.get(client, "/api/v1/nothing", headers=html_accept)
    assert status == 404 and response.content_type == "application/json"
    status, _, response = await console.get(client, "/no/such/page")
    assert status == 404 and response.content_type == "application/json"


async def test_console_overrides_leave_the_others_as_they_were(console: Console) -> None:
    bot = OverrideRequest(
        "primary", "bob", f"{YEAR}-01-10T20:00", f"{YEAR}-01-11T08:00", note="<i>x</i>"
    )
    await console.store.add_override(bot, Origin.API, "ops-bot")
    manager = await console.login("manager")
    csrf = await console.csrf(manager, "/oncall")
    form = {"csrf": csrf, "schedule": "primary", "person": "alice",
            "start": f"{YEAR}-01-05T20:00", "end": f"{YEAR}-01-06T08:00"}  # fmt: skip
    status, _, _ = await console.post(manager, "/oncall/overrides", form)
    assert status == 303
    made = [(r.origin, r.made_by) for r in await console.store.list_overrides()]
    assert made == [("console", "manager"), ("api", "ops-bot")]
    _, page, _ = await console.get(manager, "/oncall")
    assert "<td>ops-bot <small>&lt;i&gt;x&lt;/i&gt;</small></td>" in page  # a note is text


async def test_the_rota_page_says_how_many_overrides_were_made_since(console: Console) -> None:
    manager = await console.login("manager")
    _, page, _ = await console.get(manager, "/rota")
    assert 'id="edits"' not in page
    bot = OverrideRequest("primary", "bob", f"{YEAR}-01-10T20:00", f"{YEAR}-01-11T08:00")
    await console.store.add_override(bot, Origin.API, "ops-bot")
    _, page, _ = await console.get(manager, "/rota")
    assert "Overrides made since the last import (see On call): 1." in page
