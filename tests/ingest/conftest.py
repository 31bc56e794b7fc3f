"""Fixtures for the trigger side: a real SQLite store in tmp_path, real API tokens, and the
real aiohttp app served on an ephemeral 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from voipalert.clock import SystemClock
from voipalert.domain.rota import (
    Contact,
    ContactKind,
    EscalationPolicy,
    Person,
    PersonName,
    PolicyName,
    Rota,
    Route,
    Step,
    Target,
    TargetKind,
    Team,
    TeamName,
)
from voipalert.ingest.app_keys import TRUNKS
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import SipState, TrunkHealth
from voipalert.ingest.webhook import build_app, start_http
from voipalert.store import Scope, Store
from voipalert.store.api_reads import ApiReads

TOKEN_SCOPES: Mapping[str, frozenset[Scope]] = {
    "trigger": frozenset({Scope.TRIGGER}),
    "reader": frozenset({Scope.READ}),
    "admin": frozenset({Scope.ADMIN}),
    "monitor": frozenset({Scope.TRIGGER, Scope.READ}),
}


def sample_rota() -> Rota:
    """Two teams, each with a policy; the rota's own routes send database alerts to dba and
    everything else to ops."""
    alice = Person(PersonName("alice"), "en", (Contact(ContactKind.EXTENSION, "201"),))
    bob = Person(PersonName("bob"), "en", (Contact(ContactKind.EXTENSION, "202"),))

    def policy(name: str, person: str) -> EscalationPolicy:
        step = Step((Target(TargetKind.PERSON, person),), 300, 30)
        return EscalationPolicy(PolicyName(name), (step,))

    return Rota(
        people=(alice, bob),
        teams=(Team(TeamName("ops"), (alice.name,)), Team(TeamName("dba"), (bob.name,))),
        policies=(policy("ops-default", "alice"), policy("dba-default", "bob")),
        routes=(
            Route(
                "rota-db",
                policy=PolicyName("dba-default"),
                team=TeamName("dba"),
                subject="(?i)database",
            ),
            Route(
                "rota-default", policy=PolicyName("ops-default"), team=TeamName("ops"), default=True
            ),
        ),
    )


@dataclass
class Api:
    """A running API: its URL, a client session, the store behind it and its tokens."""

    base: str
    session: aiohttp.ClientSession
    store: Store
    tables: ApiReads
    db_path: Path
    app: web.Application
    tokens: dict[str, str] = field(default_factory=dict)
    signing: dict[str, str] = field(default_factory=dict)  # tokens that may trigger
    woken: list[int] = field(default_factory=list)
    sip: list[SipState] = field(default_factory=lambda: [SipState.REGISTERED])
    trunks: list[TrunkHealth] = field(default_factory=list)  # what /readyz lists

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def call(
        self, method: str, path: str, token: str | None = "admin", **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {**(self.auth(token) if token else {}), **kwargs.pop("headers", {})}
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as r:
            text = await r.text()
            body: Any = text
            if r.content_type == "application/json":
                body = await r.json()
            return r.status, body, r


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "voipalert.db", SystemClock())
    await opened.replace_rota(sample_rota())
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def make_api(store: Store, tmp_path: Path) -> AsyncIterator[ApiFactory]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []
    clock = SystemClock()
    tables = ApiReads(store, clock)
    tokens: dict[str, str] = {}
    signing: dict[str, str] = {}
    for name, scopes in TOKEN_SCOPES.items():
        _, tokens[name] = await store.create_api_token(name, scopes)
        secret = await store.signing_secret(name)
        if secret is not None:
            signing[name] = secret

    async def factory(config: IngestConfig | None = None) -> Api:
        holder: dict[str, Api] = {}
        app = build_app(
            store,
            wake=lambda: holder["api"].woken.append(1),
            sip_state=lambda: holder["api"].sip[-1],
            config=config or IngestConfig(),
            clock=clock,
        )
        app[TRUNKS] = lambda: holder["api"].trunks
        runner, port = await start_http(app, "127.0.0.1", 0)
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        api = Api(
            f"http://127.0.0.1:{port}",
            session,
            store,
            tables,
            tmp_path / "voipalert.db",
            app,
            tokens=dict(tokens),
            signing=dict(signing),
        )
        holder["api"] = api
        return api

    try:
        yield factory
    finally:
        for session in sessions:
            await session.close()
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()
