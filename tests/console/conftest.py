"""Fixtures for the web console: a real SQLite store in tmp_path with a rota and one user
per role, the real HTTP app (API and console) served on an ephemeral 127.0.0.1 port, and
browsers-as-clients (aiohttp sessions with their own cookie jars)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from voipalert.clock import SystemClock
from voipalert.console.passwords import Cost, hash_password
from voipalert.console.routes import add_console
from voipalert.console.security import ConsoleConfig
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Scope, Store
from voipalert.store.users import Role, UserTables

PASSWORD = "correct horse battery"
TEST_COST = Cost(log_n=14, r=8, p=1)  # tests only: a quicker hash, same code
ROTA = """
version: 1
people:
  - name: alice
    language: en
    contacts: [{extension: "201"}]
  - name: bob
    language: fr
    contacts: [{extension: "202"}]
teams:
  - name: ops
    members: [alice, bob]
schedules:
  - name: primary
    time_zone: Europe/Paris
    layers:
      - name: weekly
        members: [alice, bob]
        shift_length: 1
        shift_unit: weeks
        start: 2026-01-05
        handoff: "09:00"
policies:
  - name: page
    steps:
      - targets: [{schedule: primary}]
        timeout: 5m
        ring_timeout: 30s
routes:
  - name: all
    default: true
    policy: page
    team: ops
"""
# One user per role; "alice" is also a person of the rota (a responder acting for herself).
USERS = {"viewer": Role.VIEWER, "alice": Role.RESPONDER, "manager": Role.MANAGER,
         "admin": Role.ADMIN}  # fmt: skip
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@dataclass
class Console:
    base: str
    store: Store
    users: UserTables
    app: web.Application
    trigger_token: str
    runner: web.AppRunner
    woken: list[int] = field(default_factory=list)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def client(self, **headers: str) -> aiohttp.ClientSession:
        """A browser of its own: cookies kept (also for 127.0.0.1), redirects not followed
        unless asked."""
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers)
        self.sessions.append(session)
        return session

    async def get(
        self, client: aiohttp.ClientSession, path: str, **kwargs: Any
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        kwargs.setdefault("allow_redirects", False)
        async with client.get(self.base + path, **kwargs) as response:
            return response.status, await response.text(), response

    async def post(
        self, client: aiohttp.ClientSession, path: str, data: dict[str, str], **kwargs: Any
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        kwargs.setdefault("allow_redirects", False)
        async with client.post(self.base + path, data=data, **kwargs) as response:
            return response.status, await response.text(), response

    async def login(
        self, name: str, password: str = PASSWORD, client: aiohttp.ClientSession | None = None
    ) -> aiohttp.ClientSession:
        client = client or self.client()
        status, body, _ = await self.try_login(client, name, password)
        assert status == 303, (status, body)
        return client

    async def try_login(
        self, client: aiohttp.ClientSession, name: str, password: str
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        _, page, _ = await self.get(client, "/login")
        match = LOGIN_TOKEN.search(page)
        assert match is not None
        form = {"login_token": match.group(1), "name": name, "password": password, "next": "/"}
        return await self.post(client, "/login", form)

    async def csrf(self, client: aiohttp.ClientSession, path: str = "/") -> str:
        _, page, _ = await self.get(client, path)
        match = CSRF.search(page)
        assert match is not None, page
        return match.group(1)

    async def fire(self, summary: str, **labels: str) -> int:
        """An alert through the real Alertmanager webhook; returns its id."""
        alert = {
            "status": "firing",
            "labels": {"alertname": "Test", "severity": "critical", **labels},
            "annotations": {"summary": summary},
            "startsAt": "2026-01-01T00:00:00Z",
            "fingerprint": f"fp{abs(hash(summary)) % 10**12}",
        }
        # One alert in its own group, as Alertmanager sends it when it groups by alert name
        # and instance: its labels and annotations are the group's common ones.
        body = {"version": "4", "status": "firing", "receiver": "voipalert", "alerts": [alert],
                "groupLabels": {}, "commonLabels": alert["labels"],
                "commonAnnotations": alert["annotations"], "externalURL": "http://am.invalid",
                "groupKey": f"{{}}:{alert['fingerprint']}"}  # fmt: skip
        client = self.client(Authorization=f"Bearer {self.trigger_token}")
        async with client.post(f"{self.base}/api/v1/hooks/alertmanager", json=body) as r:
            assert r.status == 202, await r.text()
            answer = await r.json()
        return int(answer["results"][0]["id"])


ConsoleFactory = Callable[..., Awaitable[Console]]


@pytest.fixture
async def make_console(tmp_path: Path) -> AsyncIterator[ConsoleFactory]:
    stores: list[Store] = []
    runners: list[web.AppRunner] = []
    consoles: list[Console] = []

    async def factory(config: ConsoleConfig | None = None) -> Console:
        clock = SystemClock()
        store = await Store.open(tmp_path / f"console{len(stores)}.db", clock)
        stores.append(store)
        await store.replace_rota(parse_rota(ROTA))
        users = UserTables(store, clock)
        hashed = hash_password(PASSWORD, TEST_COST)
        for name, role in USERS.items():
            await users.add_user(name, role, hashed, "test")
        _, token = await store.create_api_token("monitoring", frozenset({Scope.TRIGGER}))
        woken: list[int] = []
        app = build_app(
            store, wake=lambda: woken.append(1), sip_state=lambda: SipState.REGISTERED,
            config=IngestConfig(), clock=clock,
        )  # fmt: skip
        add_console(app, config or ConsoleConfig(password_cost=TEST_COST))
        runner, port = await start_http(app, "127.0.0.1", 0)
        runners.append(runner)
        console = Console(f"http://127.0.0.1:{port}", store, users, app, token, runner, woken)
        consoles.append(console)
        return console

    try:
        yield factory
    finally:
        for console in consoles:
            for session in console.sessions:
                await session.close()
        for runner in runners:
            await runner.cleanup()
        for store in stores:
            await store.close()


@pytest.fixture
async def console(make_console: ConsoleFactory) -> Console:
    return await make_console()
