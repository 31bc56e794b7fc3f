"""The reads behind the HTTP API's own needs: the token list and the signing keys
(``tokens.py`` creates, verifies and revokes), the readiness probe, and the counts behind
``/metrics``. They use the store's single connection and its ``transaction()``, so the
store's rules hold (one writer, short transactions, nothing awaited on the network inside
one). Every statement targets tables of migrations 0001 and 0002 (``api_tokens``, ``meta``,
``alerts``, ``attempts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from voipalert.clock import Clock
from voipalert.store import ApiToken, Scope, Store
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.secret import derive_signing_secret


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A live token that may sign webhook bodies (``ingest.tokens``)."""

    name: str
    scopes: frozenset[Scope]
    secret: str  # derived from the token's salt and the server secret (store.secret)


@dataclass(frozen=True, slots=True)
class Counts:
    alerts_by_status: Mapping[str, int]
    attempts_by_outcome: Mapping[str, int]
    # Status webhook deliveries waiting or given up, by (target, state): docs/outbound.md.
    status_webhooks: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FinishedCall:
    outcome: str
    ended_at: datetime
    setup_seconds: float  # dial to answer, or to the end when never answered


def _scopes(text: str) -> frozenset[Scope]:
    known = {s.value for s in Scope}
    return frozenset(Scope(word) for word in text.split() if word in known)


class ApiReads:
    """Token listing and signing keys, the readiness probe, the figures behind ``/metrics``."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._db = store._db  # same package: the store's one connection
        self._clock = clock

    def load_server_key(self) -> None:
        """Read (or create) the server secret now: the HTTP app calls this when it is built,
        so a missing or unreadable file is a start-up error, not a failure at the first
        signed request. Listing tokens never needs it."""
        _ = self._db.server_key

    async def list_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones too, by name (never their secrets)."""
        async with self._db.transaction(write=False, what="list API tokens") as conn:
            rows = await conn.execute_fetchall("SELECT * FROM api_tokens ORDER BY name")
        return [
            ApiToken(
                r["id"],
                r["name"],
                _scopes(r["scopes"]),
                from_db(r["created_at"]),
                from_db_opt(r["last_used_at"]),
                from_db_opt(r["revoked_at"]),
            )
            for r in rows
        ]

    async def signing_keys(self) -> list[SigningKey]:
        """The live tokens that may sign, with the secret each one signs with."""
        async with self._db.transaction(write=False, what="list signing keys") as conn:
            rows = await conn.execute_fetchall(
                "SELECT name, scopes, signing_salt FROM api_tokens "
                "WHERE revoked_at IS NULL AND signing_salt IS NOT NULL ORDER BY id"
            )
        key = self._db.server_key
        return [
            SigningKey(
                r["name"], _scopes(r["scopes"]), derive_signing_secret(key, r["signing_salt"])
            )
            for r in rows
        ]

    async def probe_readable(self) -> None:
        """Read one row in a transaction (``StoreError``, or sqlite3's, when the database
        cannot be read). It writes nothing: ``/readyz`` is unauthenticated, and a probe that
        committed would let anyone make the server fsync at will."""
        async with self._db.transaction(write=False, what="readiness probe") as conn:
            await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'rota_version'")

    async def counts(self) -> Counts:
        async with self._db.transaction(write=False, what="count alerts and calls") as conn:
            alerts = await conn.execute_fetchall(
                "SELECT status, count(*) AS n FROM alerts GROUP BY status"
            )
            attempts = await conn.execute_fetchall(
                "SELECT coalesce(outcome, state) AS o, count(*) AS n FROM attempts GROUP BY o"
            )
            webhooks = await conn.execute_fetchall(
                "SELECT target, state, count(*) AS n FROM status_deliveries "
                "WHERE state IN ('pending', 'dead') GROUP BY target, state"
            )
        return Counts(
            {r["status"]: r["n"] for r in alerts},
            {r["o"]: r["n"] for r in attempts},
            {(r["target"], r["state"]): r["n"] for r in webhooks},
        )

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
