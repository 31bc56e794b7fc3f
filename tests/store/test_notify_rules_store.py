"""Notification rules and text attempts in the real SQLite store: a rota with named
contacts and rules survives import and load, and an attempt keeps its method and rule."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.store.conftest import Raw, RawError
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.domain.rota import NotifyMethod
from voipalert.rotafile.dump import dump_rota
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
ROTA = """
people:
  - name: carol
    contacts:
      - {extension: "203", name: desk}
      - {number: "+33698765432", name: mobile}
    rules:
      - {contact: desk, method: message}
      - {contact: desk, method: call}
      - {contact: mobile, method: call, after: 2m}
  - {name: dave, contacts: [{extension: "204"}]}
policies:
  - name: default
    steps: [{targets: [{person: carol}, {person: dave}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(database, FakeClock(START), ROTA, tmp_path / "store.secret") as opened:
        yield opened


async def test_rules_and_contact_names_round_trip_through_the_database(store: Store) -> None:
    loaded = await store.load_rota()
    assert loaded == parse_rota(ROTA)
    assert parse_rota(dump_rota(loaded)) == loaded
    # A re-import without the rules removes them (the rules are replaced with the people).
    await store.replace_rota(parse_rota(ROTA.split("    rules:")[0] + ROTA.split("2m}")[1]))
    carol = (await store.load_rota()).person("carol")
    assert carol is not None and carol.rules == ()


async def test_text_attempts_keep_their_method_and_rule(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    fresh = await store.get_alert(alert.id)
    assert fresh is not None
    calls = [a for a in plan(fresh, await store.load_rota(), [], START) if isinstance(a, PlaceCall)]
    assert [(c.key.person, c.method, c.rule) for c in calls] == [
        ("carol", NotifyMethod.MESSAGE, 0),
        ("carol", NotifyMethod.CALL, 1),
        ("dave", NotifyMethod.CALL, None),
    ]
    for call in calls:
        assert await store.record_intent(call) is not None
    detail = await store.get_alert_with_attempts(alert.id)
    assert detail is not None
    assert [(a.method, a.rule, a.contact.address) for a in detail.attempts] == [
        (NotifyMethod.MESSAGE, 0, "203"),
        (NotifyMethod.CALL, 1, "203"),
        (NotifyMethod.CALL, None, "204"),
    ]


async def test_email_contacts_and_attempts_fit_the_widened_schema(
    database: str, raw: Raw, tmp_path: Path
) -> None:
    # Migration 0009 widens the contact-kind CHECKs (in place on SQLite); the connection
    # that ran it must see the new schema at once (the SQLite runner bumps schema_version).
    config = StoreConfig(secret_file=tmp_path / "store.secret")
    store = await Store.open(database, FakeClock(START), config)
    try:
        rota = ROTA.replace(
            '      - {number: "+33698765432", name: mobile}\n',
            '      - {number: "+33698765432", name: mobile}\n'
            "      - {email: carol@example.com, name: mail}\n",
        ).replace("{contact: mobile, method: call, after: 2m}", "{contact: mail, method: email}")
        await store.replace_rota(parse_rota(rota))
        alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
        fresh = await store.get_alert(alert.id)
        assert fresh is not None
        calls = [
            a for a in plan(fresh, await store.load_rota(), [], START) if isinstance(a, PlaceCall)
        ]
        email = next(c for c in calls if c.method is NotifyMethod.EMAIL)
        attempt = await store.record_intent(email)
        assert attempt is not None and attempt.contact.address == "carol@example.com"
    finally:
        await store.close()
    # The widened CHECKs still refuse unknown kinds, on both tables.
    with pytest.raises(RawError, match=r"(?i)check"):
        await raw.execute("UPDATE contacts SET kind = 'fax'")
    with pytest.raises(RawError, match=r"(?i)check"):
        await raw.execute("UPDATE attempts SET contact_kind = 'fax'")
    if database.startswith("postgresql://"):
        return
    # A fresh connection reads the edited schema, and SQLite finds nothing wrong with it.
    conn = sqlite3.connect(database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        (schema,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'attempts'").fetchone()
        assert "'number', 'email')" in schema
    finally:
        conn.close()


async def test_without_rules_email_contacts_are_skipped_by_calls(store: Store) -> None:
    rota = """
people:
  - name: frank
    contacts: [{email: frank@example.com}, {extension: "205"}, {email: f2@example.com}]
policies:
  - name: default
    steps: [{targets: [{person: frank}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""
    await store.replace_rota(parse_rota(rota))
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    fresh = await store.get_alert(alert.id)
    assert fresh is not None
    calls = [a for a in plan(fresh, await store.load_rota(), [], START) if isinstance(a, PlaceCall)]
    assert [(c.contact_index, c.contact.address) for c in calls] == [(1, "205")]
