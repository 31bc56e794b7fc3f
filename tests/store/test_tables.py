"""The store's side tables on both backends: console users and sessions
(``store.users``), the HTTP API's reads (``store.api_reads``), the board's live calls,
and the one-engine claim. Every method a consumer calls runs here on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from tests.store.conftest import PgServer, new_pg_database
from tests.stores import ALICE_ROTA, opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AttemptOutcome, AttemptResult, NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.store import Scope, Store, StoreConfig
from voipalert.store.api_reads import ApiReads
from voipalert.store.engine_lock import EngineLockHeld
from voipalert.store.errors import DatabaseUnusable, StoreError
from voipalert.store.users import Role, UserTables

T = TypeVar("T")
START = datetime(2026, 3, 2, 10, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def store(database: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with opened_store(database, clock, ALICE_ROTA, tmp_path / "secret") as opened:
        yield opened


async def test_users_sessions_and_invitations(store: Store, clock: FakeClock) -> None:
    users = UserTables(store, clock)
    added = await users.add_user("ann", Role.ADMIN, "hash1", actor="cli")
    assert added is not None and added.role is Role.ADMIN
    assert await users.add_user("ann", Role.VIEWER, "x", actor="cli") is None
    assert await users.set_role("ann", Role.MANAGER, "cli")
    assert not await users.set_role("nobody", Role.MANAGER, "cli")
    assert not await users.login_failed(added, "10.0.0.1", limit=2, lock_for=timedelta(60))
    assert await users.login_failed(added, "10.0.0.1", limit=2, lock_for=timedelta(60))
    locked = await users.get_user("ann")
    assert locked is not None and locked.locked_until == START + timedelta(60)
    await users.login_refused("ann", None, "locked")
    session_id, session = await users.start_session(locked, timedelta(hours=1), None, "old")
    live = await users.session(session_id)
    assert live is not None and (live.csrf_token, live.expires_at) == (
        session.csrf_token,
        START + timedelta(hours=1),
    )
    assert (live.user.name, live.user.locked_until, live.user.last_login_at) == ("ann", None, START)
    assert await users.session("forged") is None
    await users.rehash(added.id, "hash2")
    await users.set_language(added.id, "fr")
    fresh = await users.get_user("ann")
    assert fresh is not None and (fresh.password_hash, fresh.language) == ("hash2", "fr")
    assert (fresh.failed_logins, fresh.locked_until, fresh.last_login_at) == (0, None, START)
    assert await users.set_password("ann", "hash3", "cli")
    assert await users.session(session_id) is None, "a new password ends every session"
    second_id, _ = await users.start_session(fresh, timedelta(hours=1), None, None)
    assert await users.session(second_id) is not None
    clock.advance(3601)
    assert await users.session(second_id) is None, "expired"
    await users.end_session("whatever", "ann", None)

    token = await users.invite("ben", Role.RESPONDER, timedelta(days=1), "ann")
    assert token is not None and await users.invite("ann", Role.VIEWER, timedelta(1), "x") is None
    assert await users.invitation(token) == ("ben", Role.RESPONDER)
    ben = await users.accept_invitation(token, "hash4")
    assert ben is not None and ben.role is Role.RESPONDER
    assert await users.accept_invitation(token, "hash5") is None, "once"
    assert [u.name for u in await users.list_users()] == ["ann", "ben"]
    await users.audit("ann", "console.viewed", {"page": "board"})
    assert await users.change_version() == len(await store.audit_trail())
    assert await users.remove_user("ben", "ann")
    assert not await users.remove_user("ben", "ann")


def _call(alert_plan: list[object]) -> PlaceCall:
    action = alert_plan[0]
    assert isinstance(action, PlaceCall)
    return action


async def test_api_reads_and_live_calls(store: Store, clock: FakeClock) -> None:
    tables = ApiReads(store, clock)
    users = UserTables(store, clock)
    await store.create_api_token("grafana", frozenset({Scope.TRIGGER}))
    await store.create_api_token("reader", frozenset({Scope.READ}))
    assert [t.name for t in await tables.list_tokens()] == ["grafana", "reader"]
    tables.load_server_key()
    [key] = await tables.signing_keys()
    assert key.name == "grafana" and key.secret == await store.signing_secret("grafana")
    await tables.probe_readable()

    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    call = _call(list(plan(alert, await store.load_rota(), [], START)))
    attempt = await store.record_intent(call)
    assert attempt is not None
    assert await users.live_attempts([alert.id, 999]) == {
        alert.id: [("alice", "pending")],
        999: [],
    }
    clock.advance(5)
    assert await store.start_attempt(attempt.id)
    assert await users.live_attempts([alert.id]) == {alert.id: [("alice", "calling")]}
    ended = START + timedelta(seconds=20)
    result = AttemptResult(AttemptOutcome.NO_ANSWER, ended, sip_status=408)
    await store.set_status_targets({"chat": ["call"]})
    await store.finish_attempt(attempt.id, result)
    counts = await tables.counts()
    assert counts.alerts_by_status == {"triggered": 1}
    assert counts.attempts_by_outcome == {"no_answer": 1}
    assert counts.status_webhooks == {("chat", "pending"): 1}
    [finished] = await tables.calls_finished_after(START)
    assert (finished.outcome, finished.ended_at, finished.setup_seconds) == (
        "no_answer",
        ended,
        15.0,
    )
    assert await tables.calls_finished_after(ended) == []


async def test_one_engine_per_database(
    store: Store, database: str, tmp_path: Path, clock: FakeClock
) -> None:
    """For PostgreSQL a session advisory lock (SQLite's lock file has its own test)."""
    await store.claim_engine()
    other = await Store.open(database, clock, StoreConfig(secret_file=tmp_path / "secret"))
    try:
        if database.startswith("postgresql://"):
            with pytest.raises(EngineLockHeld, match=r"another voipalert serve \(voipalert pid"):
                await other.claim_engine()
            await store.close()  # the session ends: the lock goes with it
            await other.claim_engine()
        else:
            await other.claim_engine()  # nothing at this level: serve locks the file
    finally:
        await other.close()


async def test_unreachable_postgresql_is_one_line(pg_server: PgServer, clock: FakeClock) -> None:
    wrong = pg_server.url().replace("postgres@", "postgres:hunter2@").rsplit(":", 1)[0]
    with pytest.raises(DatabaseUnusable, match="cannot connect") as caught:
        await Store.open(f"{wrong}:1/voipalert", clock)
    assert "hunter2" not in str(caught.value), "the password is never shown"


async def test_postgresql_connection_lost_and_regained(
    pg_server: PgServer, tmp_path: Path, clock: FakeClock
) -> None:
    """A restarted server or a network cut ends the connection: the transaction under way
    fails with a ``StoreError``, the next one connects again, and the engine takes its lock
    again; when another serve has taken it meanwhile, the engine's store refuses all work."""
    database = await new_pg_database(pg_server)
    config = StoreConfig(secret_file=tmp_path / "secret")
    store = await Store.open(database, clock, config)
    other = await Store.open(database, clock, config)
    admin = await asyncpg.connect(pg_server.url())
    name = database.rsplit("/", 1)[1]

    async def cut() -> None:
        """End every session of the database, and wait until they have ended
        (pg_terminate_backend only signals)."""
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
        async with asyncio.timeout(10):
            while True:
                if not await admin.fetchval(query, name):
                    return
                await asyncio.sleep(0.02)

    async def again(call: Callable[[], Awaitable[T]]) -> T:
        """The first use after a cut may fail (its connection is gone); the next works."""
        try:
            return await call()
        except EngineLockHeld:
            raise
        except StoreError:
            return await call()

    try:
        await store.claim_engine()
        await cut()
        assert await again(store.rota_version) == 0
        with pytest.raises(EngineLockHeld):  # taken again at the reconnection
            await again(other.claim_engine)
        await cut()
        await again(other.claim_engine)  # the other one is first this time
        with pytest.raises(EngineLockHeld):
            await again(store.rota_version)
        with pytest.raises(EngineLockHeld):  # and for good
            await store.rota_version()
        assert await other.rota_version() == 0
    finally:
        await admin.close()
        await store.close()
        await other.close()


async def test_cancelled_transaction_rolls_back(
    store: Store, database: str, clock: FakeClock
) -> None:
    """A task cancelled in the middle of a transaction (the engine's tick timeout) is
    cancelled, its work undone, and the next transaction runs normally."""
    sleep = "SELECT pg_sleep(5)" if database.startswith("postgresql://") else None
    started = asyncio.Event()

    async def slow() -> None:
        async with store._db.transaction(write=True) as conn:
            await conn.execute("UPDATE meta SET value = '99' WHERE key = 'rota_version'")
            started.set()
            if sleep is not None:
                await conn.execute(sleep)
            else:
                await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.rota_version() == 1
    alert, _ = await store.create_or_join_alert(NewAlert("after the cancel"))
    assert alert.summary == "after the cancel"
