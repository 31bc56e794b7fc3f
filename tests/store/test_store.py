"""The store on both backends (a real SQLite file, a real PostgreSQL database): schema and
migrations, the append-only audit log, forward-only attempt states, dedup, all-or-nothing
rota import, and the trigger-side API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.store.conftest import Raw, RawError
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import (
    AlertKind,
    AlertStatus,
    AttemptOutcome,
    AttemptResult,
    AttemptState,
    NewAlert,
    Position,
    Severity,
)
from voipalert.domain.policy import PlaceCall, plan
from voipalert.domain.rota import PolicyName, Step, TeamName
from voipalert.rotafile.parse import parse_rota
from voipalert.store import (
    AlertFilter,
    AlertNotFound,
    Page,
    Scope,
    Store,
    StoreError,
    UnknownReference,
)
from voipalert.store.db import StoreConfig, migrations
from voipalert.store.pg import pg_migrations

# SQLite says "UNIQUE constraint failed", PostgreSQL "duplicate key value violates unique".
UNIQUE = "UNIQUE|duplicate key"

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
  - {name: bob, contacts: [{extension: "202"}]}
teams:
  - {name: ops, members: [alice, bob]}
  - {name: dba, members: [bob]}
schedules:
  - name: primary
    time_zone: Europe/Paris
    layers:
      - {name: main, members: [alice], shift_length: 1, shift_unit: weeks,
         start: 2026-01-05, handoff: "09:00"}
policies:
  - name: default
    steps: [{targets: [{schedule: primary}], timeout: 300}]
  - name: database
    steps: [{targets: [{team: dba}], timeout: 300}]
routes:
  - {name: db, match: {labels: {service: postgres}}, policy: database, team: dba}
  - {name: rest, default: true, policy: default, team: ops}
"""

START = datetime(2026, 3, 2, 10, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(secret_file=tmp_path / "store.secret")


@pytest.fixture
async def store(database: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with opened_store(database, clock, ROTA, tmp_path / "store.secret") as opened:
        yield opened


async def test_schema_version_and_pragmas(
    store: Store, database: str, raw: Raw, tmp_path: Path, clock: FakeClock
) -> None:
    if database.startswith("postgresql://"):
        latest = pg_migrations()[-1][0]
        assert latest == migrations()[-1][0], "every migration exists for both backends"
        assert await raw.execute("SELECT version FROM schema_version") == [(latest,)]
    else:
        latest = migrations()[-1][0]
        assert await raw.execute("PRAGMA user_version") == [(latest,)]
        assert await raw.execute("PRAGMA journal_mode") == [("wal",)]
    reopened = await Store.open(database, clock, config(tmp_path))  # migrating twice: no-op
    assert await reopened.rota_version() == 1
    await reopened.close()


async def test_newer_database_is_refused(
    database: str, raw: Raw, tmp_path: Path, clock: FakeClock
) -> None:
    if database.startswith("postgresql://"):
        await (await Store.open(database, clock, config(tmp_path))).close()
        await raw.execute("UPDATE schema_version SET version = 999")
    else:
        await raw.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreError, match="newer than this voipalert"):
        await Store.open(database, clock, config(tmp_path))


async def test_audit_log_is_append_only(store: Store, raw: Raw) -> None:
    await store.create_or_join_alert(NewAlert("disk full"))
    with pytest.raises(RawError, match="append-only"):
        await raw.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(RawError, match="append-only"):
        await raw.execute("DELETE FROM audit_log")
    assert [e.action for e in await store.audit_trail()] == ["rota.imported", "alert.created"]


async def _intent(store: Store, alert_id: int) -> PlaceCall:
    alert = await store.get_alert(alert_id)
    assert alert is not None
    action = plan(alert, await store.load_rota(), [], START)[0]
    assert isinstance(action, PlaceCall)
    return action


async def test_attempt_states_only_move_forward(store: Store, raw: Raw) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    call = await _intent(store, alert.id)
    attempt = await store.record_intent(call)
    assert attempt is not None and attempt.state is AttemptState.PENDING
    assert await store.record_intent(call) is None, "one key, one attempt"
    assert await store.start_attempt(attempt.id)
    assert not await store.start_attempt(attempt.id), "dialled once"
    result = AttemptResult(AttemptOutcome.BUSY, START, sip_status=486)
    assert not await store.finish_attempt(attempt.id, result)  # busy does not acknowledge
    with pytest.raises(RawError, match="only move forward"):
        await raw.execute("UPDATE attempts SET state = 'in_flight' WHERE id = ?", attempt.id)
    detail = await store.get_alert_with_attempts(alert.id)
    assert detail is not None
    assert [(a.state, a.outcome, a.sip_status) for a in detail.attempts] == [
        (AttemptState.DONE, AttemptOutcome.BUSY, 486)
    ]


async def test_key_press_acknowledges_through_its_attempt(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    acked = AttemptResult(AttemptOutcome.ACKNOWLEDGED, START, 200, "OK", "1", START)
    assert await store.finish_attempt(attempt.id, acked)
    fresh = await store.get_alert(alert.id)
    assert fresh is not None and fresh.status is AlertStatus.ACKNOWLEDGED
    assert (fresh.acked_by, fresh.acked_via, fresh.ack_attempt) == ("alice", "call", attempt.id)


async def test_an_answered_calls_quality_is_kept_with_its_attempt(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    quality = {
        "loss_percent": 1.5,
        "jitter_ms": 3.25,
        "rtt_ms": None,
        "mos": 4.1,
        "packets_lost": 3,
    }
    result = AttemptResult(
        AttemptOutcome.ANSWERED_NO_ACK, START, 200, "OK", answered_at=START, quality=quality
    )
    await store.finish_attempt(attempt.id, result)
    detail = await store.get_alert_with_attempts(alert.id)
    assert detail is not None
    assert detail.attempts[0].quality == quality


async def test_dedup_key_joins_open_alerts_only(store: Store, raw: Raw, clock: FakeClock) -> None:
    first, created = await store.create_or_join_alert(NewAlert("disk full", dedup_key="fp"))
    clock.advance(30)
    again, joined = await store.create_or_join_alert(NewAlert("disk full", dedup_key="fp"))
    assert created and not joined and again.id == first.id
    assert (again.occurrences, again.last_seen_at) == (2, START + timedelta(seconds=30))
    with pytest.raises(RawError, match=UNIQUE):
        await raw.execute(
            "INSERT INTO alerts (kind, status, severity, summary, source, dedup_key, created_at, "
            "last_seen_at, esc_since) VALUES ('escalation', 'triggered', 'critical', 'x', 'y', "
            "'fp', '', '', '')"
        )
    assert (await store.resolve_alert(first.id, "alertmanager")).changed
    fresh, created = await store.create_or_join_alert(NewAlert("disk full", dedup_key="fp"))
    assert created and fresh.id != first.id


async def test_routing_rules_pick_policy_and_team(store: Store) -> None:
    db, _ = await store.create_or_join_alert(
        NewAlert("slow queries", labels={"service": "postgres"})
    )
    other, _ = await store.create_or_join_alert(NewAlert("fan failure", labels={"service": "hvac"}))
    assert (db.policy, db.team) == ("database", "dba")
    assert (other.policy, other.team) == ("default", "ops")
    chosen = await store.create_or_join_alert(NewAlert("x", policy=PolicyName("database")))
    assert chosen[0].policy == "database"
    with pytest.raises(UnknownReference, match="no escalation policy named 'nope'"):
        await store.create_or_join_alert(NewAlert("x", policy=PolicyName("nope")))
    with pytest.raises(UnknownReference, match="needs a team"):
        await store.create_or_join_alert(NewAlert("x", kind=AlertKind.MASS))


async def test_ack_and_resolve_transitions(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    pending = await store.record_intent(await _intent(store, alert.id))
    assert pending is not None
    ack = await store.ack_alert(alert.id, by="api-token:grafana", via="api")
    assert ack.changed and ack.cancelled_attempts == (pending.id,)
    assert (ack.alert.status, ack.alert.acked_by, ack.alert.acked_via) == (
        AlertStatus.ACKNOWLEDGED,
        "api-token:grafana",
        "api",
    )
    assert not (await store.ack_alert(alert.id, by="x", via="api")).changed
    resolved = await store.resolve_alert(alert.id, by="alertmanager")
    assert resolved.changed and resolved.alert.status is AlertStatus.RESOLVED
    assert not (await store.resolve_alert(alert.id, by="again")).changed
    assert not (await store.ack_alert(alert.id, by="late", via="api")).changed
    with pytest.raises(AlertNotFound):
        await store.ack_alert(999, by="x", via="api")
    with pytest.raises(AlertNotFound):
        await store.resolve_alert(999, by="x")
    assert await store.resolve_by_dedup_key("unknown", by="x") is None


async def test_list_alerts_filters_and_pages(store: Store, clock: FakeClock) -> None:
    ids = []
    for i in range(5):
        alert, _ = await store.create_or_join_alert(
            NewAlert(f"alert {i}", severity=Severity.WARNING, source="grafana" if i % 2 else "api")
        )
        ids.append(alert.id)
        clock.advance(60)
    await store.resolve_alert(ids[0], "x")
    page = await store.list_alerts(page=Page(limit=2))
    assert [a.id for a in page.alerts] == [ids[4], ids[3]] and page.next_before_id == ids[3]
    page = await store.list_alerts(page=Page(limit=2, before_id=page.next_before_id))
    assert [a.id for a in page.alerts] == [ids[2], ids[1]]
    page = await store.list_alerts(page=Page(limit=2, before_id=page.next_before_id))
    assert [a.id for a in page.alerts] == [ids[0]] and page.next_before_id is None
    open_only = await store.list_alerts(AlertFilter(statuses=frozenset({AlertStatus.TRIGGERED})))
    assert ids[0] not in [a.id for a in open_only.alerts] and len(open_only.alerts) == 4
    since = await store.list_alerts(AlertFilter(since=START + timedelta(seconds=120)))
    assert [a.id for a in since.alerts] == [ids[4], ids[3], ids[2]]
    grafana = await store.list_alerts(AlertFilter(source="grafana", team="ops"))
    assert [a.id for a in grafana.alerts] == [ids[3], ids[1]]
    assert (await store.list_alerts(AlertFilter(team="dba"))).alerts == ()


async def test_rota_import_is_all_or_nothing(store: Store) -> None:
    before = await store.load_rota()
    version = await store.rota_version()
    policy = before.policies[0]
    # The parser refuses a zero ring timeout; the database's CHECK is the last line.
    broken_step = Step(policy.steps[0].targets, 300, 0)
    broken = replace(before, policies=(replace(policy, steps=(broken_step,)), *before.policies[1:]))
    refused = r"import rota: (CHECK constraint failed|.* violates check constraint)"
    with pytest.raises(StoreError, match=refused):
        await store.replace_rota(broken)
    assert await store.load_rota() == before
    assert await store.rota_version() == version


async def test_reimport_keeps_alerts_pointing_at_their_policy(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None
    edited = (
        ROTA.replace("{name: bob, contacts", "{name: robert, contacts")
        .replace("[alice, bob]", "[alice, robert]")
        .replace("[bob]", "[robert]")
    )
    await store.replace_rota(parse_rota(edited))
    fresh = await store.get_alert_with_attempts(alert.id)
    assert fresh is not None and fresh.alert.policy == "default" and fresh.alert.team == "ops"
    assert [a.key.person for a in fresh.attempts] == ["alice"]
    rota = await store.load_rota()
    assert [p.name for p in rota.people] == ["alice", "robert"]
    team = rota.team(TeamName("dba"))
    assert team is not None and team.members == ("robert",)


async def test_interrupted_and_advanced(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    interrupted = await store.interrupt_in_flight()
    assert [a.id for a in interrupted] == [attempt.id]
    assert await store.interrupt_in_flight() == []
    moved = Position(0, 1, START + timedelta(minutes=5))
    assert await store.advance_escalation(alert.id, alert.position, moved, "test")
    assert not await store.advance_escalation(alert.id, alert.position, moved, "stale plan")
    assert await store.close_unacknowledged(alert.id, "exhausted")
    assert await store.settle(alert.id)
    assert await store.engine_snapshot() == []


async def test_api_tokens_are_kept_hashed(store: Store, raw: Raw) -> None:
    token, secret = await store.create_api_token("grafana", frozenset({Scope.TRIGGER}))
    assert secret.startswith("va_") and len(secret) > 40
    stored = (await raw.execute("SELECT token_sha256 FROM api_tokens"))[0][0]
    assert secret not in stored and len(stored) == 64
    found = await store.verify_api_token(secret)
    assert found is not None and (found.name, found.scopes) == (
        "grafana",
        frozenset({Scope.TRIGGER}),
    )
    assert found.last_used_at == START
    assert await store.verify_api_token(secret + "x") is None
    with pytest.raises(StoreError, match=UNIQUE):
        await store.create_api_token("grafana", frozenset({Scope.READ}))
    assert await store.revoke_api_token("grafana")
    assert await store.verify_api_token(secret) is None
    assert token.id == found.id


async def test_shift_notices_and_their_audit_on_both_backends(store: Store) -> None:
    """A person's shift notice survives the rota's trip through the database, and the
    audit entries the notice sender writes and reads back (app.shift_notices)."""
    text = ROTA.replace(
        '{name: alice, contacts: [{extension: "201"}]}',
        '{name: alice, contacts: [{extension: "201"}], shift_notice: {contact: 1, before: 45m}}',
        1,
    )
    rota = parse_rota(text)
    assert any(p.shift_notice is not None for p in rota.people)
    await store.replace_rota(rota)
    assert await store.load_rota() == rota
    detail = {"person": "alice", "schedule": "ops", "start": START.isoformat(), "outcome": "ok"}
    await store.record("voipalert", "shift_notice.sent", detail)
    (entry,) = await store.audit_since("shift_notice.sent", START - timedelta(days=1))
    assert entry.detail == detail and entry.alert_id is None
    assert await store.audit_since("shift_notice.sent", START + timedelta(days=1)) == []
