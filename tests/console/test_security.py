"""The console's defences: every route's role (a table over all of them), CSRF, the session
cookie's flags, session fixation, the log-in lockout and rate limit, and alert text that
tries to be markup (pages and the live stream)."""

from __future__ import annotations

import asyncio
import re
from typing import Final

import aiohttp
import pytest
from yarl import URL

from tests.console.conftest import PASSWORD, TEST_COST, Console, ConsoleFactory
from voipalert.console.passwords import Cost
from voipalert.console.routes import ROUTES
from voipalert.console.security import ConsoleConfig
from voipalert.domain.alert import AlertId
from voipalert.store.users import Role

# The least role of every console route, written out here on purpose: a new route fails
# test_every_route_is_in_the_table until someone decides who may use it.
ROLE_TABLE: Final[dict[tuple[str, str], Role | None]] = {
    ("GET", "/login"): None,
    ("POST", "/login"): None,
    ("POST", "/logout"): Role.VIEWER,
    ("GET", "/invite/{token}"): None,
    ("POST", "/invite/{token}"): None,
    ("GET", "/"): Role.VIEWER,
    ("GET", "/events"): Role.VIEWER,
    ("GET", "/alerts/{id}"): Role.VIEWER,
    ("GET", "/alerts/{id}/prompt.wav"): Role.VIEWER,
    ("GET", "/alerts/{id}/ack"): Role.RESPONDER,
    ("GET", "/alerts/{id}/resolve"): Role.RESPONDER,
    ("POST", "/alerts/{id}/ack"): Role.RESPONDER,
    ("POST", "/alerts/{id}/resolve"): Role.RESPONDER,
    ("GET", "/oncall"): Role.VIEWER,
    ("POST", "/oncall/overrides"): Role.RESPONDER,
    ("POST", "/oncall/overrides/remove"): Role.RESPONDER,
    ("GET", "/mass"): Role.MANAGER,
    ("POST", "/mass"): Role.MANAGER,
    ("GET", "/mass/prompt.wav"): Role.MANAGER,
    ("GET", "/rota"): Role.MANAGER,
    ("POST", "/rota/preview"): Role.MANAGER,
    ("POST", "/rota/apply"): Role.MANAGER,
    ("GET", "/admin"): Role.ADMIN,
    ("POST", "/admin/tokens"): Role.ADMIN,
    ("POST", "/admin/test-call"): Role.ADMIN,
    ("GET", "/admin/users"): Role.ADMIN,
    ("POST", "/admin/users"): Role.ADMIN,
}
IDENTITIES: Final = {None: None, "viewer": Role.VIEWER, "alice": Role.RESPONDER,
                     "manager": Role.MANAGER, "admin": Role.ADMIN}  # fmt: skip
LOGIN_TOKEN_FIELD: Final = re.compile(r'name="login_token" value="([^"]+)"')
XSS_SUMMARY: Final = '<script>alert(1)</script><img src=x onerror="alert(2)">'
XSS_LABEL: Final = '"><svg onload=alert(3)>'


def _concrete(path: str) -> list[str]:
    path = re.sub(r"\{id:[^}]*\}\}?", "{id}", path)
    path = re.sub(r"\{token:[^}]*\}\}?", "{token}", path)
    if "{action" in path:
        return [path.split("{action")[0] + action for action in ("ack", "resolve")]
    return [path]


def test_every_route_is_in_the_table() -> None:
    routes = {(r.method, p) for r in ROUTES for p in _concrete(r.path)}
    assert routes == set(ROLE_TABLE)
    for route in ROUTES:
        for path in _concrete(route.path):
            assert ROLE_TABLE[(route.method, path)] == route.role, path


# What each action's form carries in the role test (a valid request, so that a role that
# may act gets past the guard; the outcome itself is not the point).
FORMS: Final[dict[str, dict[str, str]]] = {
    "/oncall/overrides": {"schedule": "primary", "person": "alice",
                          "start": "2030-01-05T20:00", "end": "2030-01-06T08:00"},
    "/oncall/overrides/remove": {"override": "none"},
    "/mass": {"team": "nope", "message": "role test"},
    "/rota/preview": {"text": "version: 1\npeople: []\n", "version": "stale"},
    "/rota/apply": {"text": "version: 1\npeople: []\n", "version": "stale"},
    "/admin/tokens": {"action": "revoke", "name": "no-such-token"},
    "/admin/users": {"action": "role", "name": "viewer", "role": "viewer"},
}  # fmt: skip


def _form(path: str, csrf: str) -> dict[str, str]:
    return {"csrf": csrf, **FORMS.get(path, {})}


async def _status(console: Console, client: aiohttp.ClientSession, method: str, path: str,
                  csrf: str) -> tuple[int, str]:  # fmt: skip
    if method == "GET" and path == "/events":
        async with client.get(console.base + path, allow_redirects=False) as response:
            return response.status, response.headers.get("Location", "")
    if method == "GET":
        status, _, response = await console.get(client, path)
    else:
        status, _, response = await console.post(client, path, _form(path, csrf))
    return status, response.headers.get("Location", "")


@pytest.mark.parametrize("name", list(IDENTITIES), ids=lambda n: n or "anonymous")
async def test_role_table_over_all_routes(console: Console, name: str | None) -> None:
    role = IDENTITIES[name]
    client = await console.login(name) if name else console.client()
    csrf = await console.csrf(client) if name else "none"
    order = sorted(ROLE_TABLE, key=lambda k: k[1] == "/logout")  # log out last
    for method, template in order:
        alert_id = await console.fire(f"role test {name} {method} {template}")
        path = template.replace("{id}", str(alert_id)).replace("{token}", "no-such-invitation")
        needed = ROLE_TABLE[(method, template)]
        status, location = await _status(console, client, method, path, csrf)
        where = f"{name} {method} {path}: {status} {location}"
        if needed is None:
            assert status in (200, 303, 401, 403, 404), where  # 404: no such invitation
        elif role is None:
            expected = 401 if path == "/events" else 303
            assert status == expected, where
            if status == 303:
                assert location.startswith("/login"), where
        elif role < needed:
            assert status == 403, where
        else:
            assert status not in (401, 403), where
            assert not location.startswith("/login") or path == "/logout", where


async def test_post_without_csrf_token_is_refused(console: Console) -> None:
    alert_id = await console.fire("csrf test")
    client = await console.login("alice")
    good = await console.csrf(client)
    for form, headers in (
        ({}, {}),
        ({"csrf": "forged"}, {}),
        ({"csrf": good}, {"Origin": "http://evil.example"}),
    ):
        status, page, _ = await console.post(client, f"/alerts/{alert_id}/ack", form,
                                             headers=headers)  # fmt: skip
        assert status == 403, (form, headers)
        assert "The form has expired" in page
    alert = await console.store.get_alert(alert_id)
    assert alert is not None and alert.status.value == "triggered"
    status, _, response = await console.post(client, f"/alerts/{alert_id}/ack", {"csrf": good})
    assert status == 303 and response.headers["Location"] == f"/alerts/{alert_id}?done=ack"
    alert = await console.store.get_alert(alert_id)
    assert alert is not None and alert.status.value == "acknowledged"
    assert alert.acked_by == "alice" and alert.acked_via == "console"
    assert console.woken, "the engine was not woken"
    trail = await console.store.audit_trail(AlertId(alert_id))
    assert any(e.action == "alert.acknowledged" and e.actor == "alice" for e in trail)


async def test_login_form_needs_its_token(console: Console) -> None:
    client = console.client()
    await console.get(client, "/login")
    form = {"name": "admin", "password": PASSWORD}
    status, _, _ = await console.post(client, "/login", form)
    assert status == 403
    status, _, _ = await console.post(client, "/login", {**form, "login_token": "forged"})
    assert status == 403


async def test_session_cookie_flags(console: Console) -> None:
    client = console.client()
    status, _, response = await console.try_login(client, "viewer", PASSWORD)
    assert status == 303
    cookies = [c for c in response.headers.getall("Set-Cookie") if c.startswith("va_session=")]
    assert len(cookies) == 1
    flags = {part.strip().split("=")[0].lower(): part for part in cookies[0].split(";")}
    assert "httponly" in flags
    assert flags["samesite"].strip().lower() == "samesite=strict"
    assert flags["path"].strip() == "Path=/"
    assert "secure" not in flags  # plain HTTP on loopback; set when served over HTTPS
    status, _, page_response = await console.get(client, "/")
    assert status == 200
    csp = page_response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page_response.headers["X-Content-Type-Options"] == "nosniff"
    assert page_response.headers["X-Frame-Options"] == "DENY"


def _session_cookie(client: aiohttp.ClientSession) -> str:
    for cookie in client.cookie_jar:
        if cookie.key == "va_session":
            return cookie.value
    raise AssertionError("no session cookie")


async def test_session_fixation(console: Console) -> None:
    client = console.client()
    planted = "attacker-chose-this-session-id"
    client.cookie_jar.update_cookies({"va_session": planted}, URL(console.base))
    await console.login("admin", client=client)
    first = _session_cookie(client)
    assert first != planted
    # a second log-in in the same browser gets a new id, and the old one stops working
    await console.login("admin", client=client)
    second = _session_cookie(client)
    assert second != first
    for stale in (planted, first):
        other = console.client()
        other.cookie_jar.update_cookies({"va_session": stale}, URL(console.base))
        status, _, response = await console.get(other, "/")
        assert status == 303 and response.headers["Location"].startswith("/login"), stale
    status, _, _ = await console.get(client, "/")
    assert status == 200


async def test_logout_ends_the_session(console: Console) -> None:
    client = await console.login("viewer")
    session_id = _session_cookie(client)
    csrf = await console.csrf(client)
    status, _, _ = await console.post(client, "/logout", {"csrf": csrf})
    assert status == 303
    other = console.client()
    other.cookie_jar.update_cookies({"va_session": session_id}, URL(console.base))
    status, _, _ = await console.get(other, "/")
    assert status == 303


async def test_lockout_after_repeated_failures(make_console: ConsoleFactory) -> None:
    console = await make_console(
        ConsoleConfig(lockout_failures=3, lockout_seconds=600, password_cost=TEST_COST)
    )
    client = console.client()
    for _ in range(3):
        status, page, _ = await console.try_login(client, "manager", "wrong password!")
        assert status == 401 and "Wrong name or password." in page
    status, page, _ = await console.try_login(client, "manager", PASSWORD)
    assert status == 403 and "locked" in page
    user = await console.users.get_user("manager")
    assert user is not None and user.locked_until is not None
    trail = [e for e in await console.store.audit_trail() if e.actor == "manager"]
    assert [e.action for e in trail].count("console.login_failed") == 3
    assert trail[-1].action == "console.login_refused" and trail[-1].detail["reason"] == "locked"
    # a new password (voipalert user passwd) lifts the lock
    user_hash = user.password_hash
    await console.users.set_password("manager", user_hash, "test")
    await console.login("manager")


async def test_unknown_user_gets_the_same_answer(console: Console) -> None:
    client = console.client()
    status, page, _ = await console.try_login(client, "nobody", PASSWORD)
    assert status == 401 and "Wrong name or password." in page


async def test_login_rate_limit_per_address(make_console: ConsoleFactory) -> None:
    console = await make_console(
        ConsoleConfig(login_attempts=4, login_window_seconds=60, password_cost=TEST_COST)
    )
    client = console.client()
    statuses = [(await console.try_login(client, "viewer", "nope nope nope"))[0] for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    status, _, _ = await console.try_login(client, "viewer", PASSWORD)
    assert status == 429  # the right password too, until the window has passed


async def test_markup_in_alerts_is_shown_as_text(console: Console) -> None:
    alert_id = await console.fire(XSS_SUMMARY, instance=XSS_LABEL)
    client = await console.login("admin")
    for path in ("/", f"/alerts/{alert_id}", f"/alerts/{alert_id}/ack"):
        status, page, _ = await console.get(client, path)
        assert status == 200, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "<svg" not in page, path
    status, page, _ = await console.get(client, f"/alerts/{alert_id}")
    assert "&#34;&gt;&lt;svg onload=alert(3)&gt;" in page
    event = await _first_board_event(console, client)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in event
    assert "<script>alert" not in event and "<img src=x" not in event


async def _first_board_event(console: Console, client: aiohttp.ClientSession) -> str:
    async with asyncio.timeout(10):
        async with client.get(console.base + "/events") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return await read_event(response, "board")


async def read_event(response: aiohttp.ClientResponse, name: str) -> str:
    """The data of the next event called ``name`` on an open stream."""
    event, data = "", []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif not line:
            if event == name:
                return "\n".join(data)
            event, data = "", []
    raise AssertionError("stream ended")


async def test_old_hash_parameters_are_upgraded_at_log_in(make_console: ConsoleFactory) -> None:
    console = await make_console(ConsoleConfig(password_cost=Cost(log_n=15, r=8, p=1)))
    before = await console.users.get_user("viewer")
    assert before is not None and before.password_hash.startswith("scrypt$14$8$1$")
    await console.login("viewer")
    after = await console.users.get_user("viewer")
    assert after is not None and after.password_hash.startswith("scrypt$15$8$1$")
    await console.login("viewer")  # the new hash checks the same password


async def test_invitation_link_works_once(console: Console) -> None:
    admin = await console.login("admin")
    csrf = await console.csrf(admin, "/admin/users")
    form = {"csrf": csrf, "action": "invite", "name": "noor", "role": "responder"}
    status, page, _ = await console.post(admin, "/admin/users", form)
    assert status == 200, page
    link = page.split('id="invitation"')[1].split("<code>")[1].split("</code>")[0]
    assert link.startswith(console.base + "/invite/")
    path = link.removeprefix(console.base)
    status, _, _ = await console.post(admin, "/admin/users", form)
    assert status == 200  # a second invitation for the same name is allowed until used

    guest = console.client()
    status, page, _ = await console.get(guest, path)
    assert status == 200 and "as noor" in page
    token = LOGIN_TOKEN_FIELD.search(page)
    assert token is not None
    answer = {"login_token": token.group(1), "password": "short", "again": "short"}
    status, page, _ = await console.post(guest, path, answer)
    assert status == 422 and "at least 10 characters" in page
    _, page, _ = await console.get(guest, path)
    token = LOGIN_TOKEN_FIELD.search(page)
    assert token is not None
    chosen = "noor's own passphrase"
    answer = {"login_token": token.group(1), "password": chosen, "again": chosen}
    status, _, response = await console.post(guest, path, answer)
    assert status == 303 and response.headers["Location"] == "/"
    status, page, _ = await console.get(guest, "/")
    assert status == 200 and "signed in as noor (responder)" in page
    # used: the link is dead; the account logs in with the chosen password
    status, page, _ = await console.get(console.client(), path)
    assert status == 404 and "unknown, used or expired" in page
    await console.login("noor", chosen)
    actions = [(e.actor, e.action) for e in await console.store.audit_trail()]
    assert ("admin", "user.invited") in actions and ("noor", "user.invitation_accepted") in actions
    status, page, _ = await console.post(
        admin, "/admin/users", {**form, "name": "admin"}
    )  # an existing name cannot be invited
    assert status == 409


async def test_login_goes_back_only_to_this_site(console: Console) -> None:
    for target, expected in (
        ("/oncall?at=2030-01-05T22:00", "/oncall?at=2030-01-05T22:00"),
        ("//evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
    ):
        client = console.client()
        _, page, _ = await console.get(client, "/login")
        token = LOGIN_TOKEN_FIELD.search(page)
        assert token is not None
        form = {"login_token": token.group(1), "name": "viewer", "password": PASSWORD,
                "next": target}  # fmt: skip
        status, _, response = await console.post(client, "/login", form)
        assert status == 303 and response.headers["Location"] == expected, target


async def test_origin_must_be_this_host(console: Console) -> None:
    alert_id = await console.fire("origin test")
    client = await console.login("alice")
    csrf = await console.csrf(client)
    host = console.base.removeprefix("http://")
    for origin in ("null", f"http://{host}.evil.example", "http://127.0.0.2:1", host):
        status, _, _ = await console.post(
            client, f"/alerts/{alert_id}/ack", {"csrf": csrf}, headers={"Origin": origin}
        )
        assert status == 403, origin
    # https: the same host behind a proxy that terminates TLS
    status, _, _ = await console.post(
        client, f"/alerts/{alert_id}/ack", {"csrf": csrf}, headers={"Origin": f"https://{host}"}
    )
    assert status == 303
