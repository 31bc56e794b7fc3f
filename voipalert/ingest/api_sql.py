"""Statements the trigger side needs that the store does not offer (yet).

TO MOVE INTO ``voipalert/store``: this module only exists because the store package belongs
to another branch while this one is built. It reaches the store's single connection through
``Store._db`` and uses the store's own ``transaction()``, so it keeps the store's rules (one
writer, short transactions, nothing awaited on the network inside one). Every statement here
targets tables of migration 0001 (``api_tokens``, ``meta``, ``alerts``, ``attempts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from voipalert.clock import Clock
from voipalert.ingest.tokens import Scope, TokenRecord
from voipalert.store import Store, StoreError
from voipalert.store.db import from_db, from_db_opt, to_db


class TokenExists(StoreError, ValueError):
    """A token with that name exists (revoked ones too: names are never reused)."""


@dataclass(frozen=True, slots=True)
class Counts:
    alerts_by_status: Mapping[str, int]
    attempts_by_outcome: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class FinishedCall:
    outcome: str
    ended_at: datetime
    setup_seconds: float  # dial to answer, or to the end when never answered


def _token(row: aiosqlite.Row) -> TokenRecord:
    return TokenRecord(
        name=row["name"],
        token_sha256=row["token_sha256"],
        scopes=Scope.parse_many(row["scopes"]),
        created_at=from_db(row["created_at"]),
        last_used_at=from_db_opt(row["last_used_at"]),
        revoked_at=from_db_opt(row["revoked_at"]),
    )


class ApiTables:
    """API tokens, the readiness probe and the figures behind ``/metrics``."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._db = store._db  # see the module docstring
        self._clock = clock

    async def create_token(
        self, name: str, token_sha256: str, scopes: frozenset[Scope]
    ) -> TokenRecord:
        now = self._clock.now_utc()
        text = " ".join(sorted(s.value for s in scopes))
        async with self._db.transaction(write=True, what="create API token") as conn:
            taken = list(
                await conn.execute_fetchall("SELECT 1 FROM api_tokens WHERE name = ?", (name,))
            )
            if taken:
                raise TokenExists(f"a token named {name!r} already exists")
            await conn.execute(
                "INSERT INTO api_tokens (name, token_sha256, scopes, created_at) "
                "VALUES (?, ?, ?, ?)",
                (name, token_sha256, text, to_db(now)),
            )
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action, detail) VALUES (?, 'cli', "
                "'token.created', json_object('name', ?, 'scopes', ?))",
                (to_db(now), name, text),
            )
        return TokenRecord(name, token_sha256, scopes, now)

    async def list_tokens(self) -> list[TokenRecord]:
        async with self._db.transaction(write=False, what="list API tokens") as conn:
            rows = await conn.execute_fetchall("SELECT * FROM api_tokens ORDER BY name")
        return [_token(r) for r in rows]

    async def revoke_token(self, name: str) -> bool:
        """False when there is no such live token."""
        now = to_db(self._clock.now_utc())
        async with self._db.transaction(write=True, what="revoke API token") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL "
                    "RETURNING id",
                    (now, name),
                )
            )
            if rows:
                await conn.execute(
                    "INSERT INTO audit_log (at, actor, action, detail) VALUES (?, 'cli', "
                    "'token.revoked', json_object('name', ?))",
                    (now, name),
                )
        return bool(rows)

    async def use_token(self, token_sha256: str) -> TokenRecord | None:
        """The live token with this hash, stamping its last use; None if unknown or revoked."""
        async with self._db.transaction(write=True, what="look up API token") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE api_tokens SET last_used_at = ? "
                    "WHERE token_sha256 = ? AND revoked_at IS NULL RETURNING *",
                    (to_db(self._clock.now_utc()), token_sha256),
                )
            )
        return _token(rows[0]) if rows else None

    async def live_tokens(self) -> list[TokenRecord]:
        async with self._db.transaction(write=False, what="list API tokens") as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY id"
            )
        return [_token(r) for r in rows]

    async def probe_writable(self) -> None:
        """Commit one small write (``StoreError``, or sqlite3's, when the disk refuses)."""
        async with self._db.transaction(write=True, what="readiness probe") as conn:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe_at', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (to_db(self._clock.now_utc()),),
            )

    async def counts(self) -> Counts:
        async with self._db.transaction(write=False, what="count alerts and calls") as conn:
            alerts = await conn.execute_fetchall(
                "SELECT status, count(*) AS n FROM alerts GROUP BY status"
            )
            attempts = await conn.execute_fetchall(
                "SELECT coalesce(outcome, state) AS o, count(*) AS n FROM attempts GROUP BY o"
            )
        return Counts({r["status"]: r["n"] for r in alerts}, {r["o"]: r["n"] for r in attempts})

    async def calls_finished_after(
        self, after: datetime, limit: int = 10_000
    ) -> list[FinishedCall]:
        """Dialled calls that ended after ``after``, oldest end first."""
        async with self._db.transaction(write=False, what="read finished calls") as conn:
            rows = await conn.execute_fetchall(
                "SELECT outcome, started_at, answered_at, ended_at FROM attempts "
                "WHERE ended_at > ? AND started_at IS NOT NULL AND outcome IS NOT NULL "
                "ORDER BY ended_at LIMIT ?",
                (to_db(after), limit),
            )
        calls = []
        for row in rows:
            started = from_db(row["started_at"])
            ended = from_db(row["ended_at"])
            answered = from_db_opt(row["answered_at"])
            setup = ((answered or ended) - started).total_seconds()
            calls.append(FinishedCall(row["outcome"], ended, max(0.0, setup)))
        return calls
