"""Console users and their sessions (migration 0003): the statements behind ``voipalert user``
and the web console's log-in. Hashing passwords is not done here (the store keeps the hash
string it is given, ``voipalert.console.passwords`` makes and checks it).

Every change is written to the audit log under the name of whoever made it (``actor``):
the CLI, or the console user.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from voipalert.clock import Clock
from voipalert.store import alert_sql
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.repo import Store
from voipalert.store.sql import Row

# A user name: what `voipalert user add` and the users page accept alike.
USER_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SESSION_ID_BYTES: Final = 32
INVITATION_HOURS: Final = 72  # how long an invitation link works
CSRF_BYTES: Final = 32


class Role(enum.IntEnum):
    """Each role may do what the ones below it may."""

    VIEWER = 1  # read everything
    RESPONDER = 2  # acknowledge, resolve, own overrides
    MANAGER = 3  # anyone's overrides (rota, mass alerts later)
    ADMIN = 4  # users (settings, tokens later)

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}") from None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    password_hash: str
    language: str | None
    created_at: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None
    last_login_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _user(r: Row) -> User:
    return User(
        id=r["id"],
        name=r["name"],
        role=Role.parse(r["role"]),
        password_hash=r["password_hash"],
        language=r["language"],
        created_at=from_db(r["created_at"]),
        failed_logins=r["failed_logins"],
        locked_until=from_db_opt(r["locked_until"]),
        last_login_at=from_db_opt(r["last_login_at"]),
    )


class UserTables:
    """Users and sessions over the store's one connection (its rules hold: one writer,
    short transactions)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._db = store._db  # same package: the store's one connection
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now_utc()

    # ---------------------------------------------------------------- users

    async def add_user(self, name: str, role: Role, password_hash: str, actor: str) -> User | None:
        """A new user, or None when the name is taken."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=f"add user {name!r}") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "INSERT INTO users (name, role, password_hash, created_at, "
                    "password_changed_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING RETURNING *",
                    (name, role.label, password_hash, to_db(now), to_db(now)),
                )
            )
            if not rows:
                return None
            await alert_sql.audit(conn, now, actor, "user.added", name=name, role=role.label)
        return _user(rows[0])

    async def get_user(self, name: str) -> User | None:
        async with self._db.transaction(write=False) as conn:
            rows = list(await conn.execute_fetchall("SELECT * FROM users WHERE name = ?", (name,)))
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[User]:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall("SELECT * FROM users ORDER BY name")
        return [_user(r) for r in rows]

    async def set_role(self, name: str, role: Role, actor: str) -> bool:
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=f"set role of {name!r}") as conn:
            rows = await alert_sql.update_audited(
                conn,
                "UPDATE users SET role = ? WHERE name = ? RETURNING id",
                (role.label, name),
                now,
                lambda _: alert_sql.Note(
                    actor, "user.role_set", detail={"name": name, "role": role.label}
                ),
            )
        return bool(rows)

    async def set_password(self, name: str, password_hash: str, actor: str) -> bool:
        """New password; every session of the user ends, and a lockout is lifted."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=f"set password of {name!r}") as conn:
            rows = await alert_sql.update_audited(
                conn,
                "UPDATE users SET password_hash = ?, password_changed_at = ?, "
                "failed_logins = 0, locked_until = NULL WHERE name = ? RETURNING id",
                (password_hash, to_db(now), name),
                now,
                lambda _: alert_sql.Note(actor, "user.password_set", detail={"name": name}),
            )
            if rows:
                await conn.execute("DELETE FROM sessions WHERE user_id = ?", (rows[0]["id"],))
        return bool(rows)

    async def rehash(self, user_id: int, password_hash: str) -> None:
        """The same password hashed with new parameters (at a log-in): sessions stay."""
        async with self._db.transaction(write=True, what="re-hash password") as conn:
            await conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )

    async def set_language(self, user_id: int, language: str | None) -> None:
        async with self._db.transaction(write=True, what="set language") as conn:
            await conn.execute("UPDATE users SET language = ? WHERE id = ?", (language, user_id))

    async def remove_user(self, name: str, actor: str) -> bool:
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=f"remove user {name!r}") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "DELETE FROM users WHERE name = ? RETURNING id", (name,)
                )
            )
            if rows:
                await alert_sql.audit(conn, now, actor, "user.removed", name=name)
        return bool(rows)

    # ---------------------------------------------------------------- log-in

    async def login_failed(
        self, user: User, remote: str | None, limit: int, lock_for: timedelta
    ) -> bool:
        """Count a failed log-in; True when this failure locks the account."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="record failed log-in") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? "
                    "RETURNING failed_logins",
                    (user.id,),
                )
            )
            count = int(rows[0]["failed_logins"]) if rows else 0
            locked = count >= limit
            if locked:
                await conn.execute(
                    "UPDATE users SET locked_until = ?, failed_logins = 0 WHERE id = ?",
                    (to_db(now + lock_for), user.id),
                )
            await alert_sql.audit(
                conn, now, user.name, "console.login_failed", remote=remote, locked=locked
            )
        return locked

    async def login_refused(self, name: str, remote: str | None, reason: str) -> None:
        """A log-in refused before the password was looked at (locked, rate limited)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="record refused log-in") as conn:
            await alert_sql.audit(
                conn, now, name, "console.login_refused", remote=remote, reason=reason
            )

    async def start_session(
        self, user: User, lifetime: timedelta, remote: str | None, replaces: str | None
    ) -> tuple[str, Session]:
        """A fresh session id for ``user`` (never one the browser brought: a session id
        planted before log-in is deleted, not promoted). Returns the id for the cookie."""
        now = self._clock.now_utc()
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        csrf = secrets.token_urlsafe(CSRF_BYTES)
        expires = now + lifetime
        async with self._db.transaction(write=True, what="start session") as conn:
            if replaces is not None:
                await conn.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_digest(replaces),))
            await conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (to_db(now),))
            await conn.execute(
                "INSERT INTO sessions (id_sha256, user_id, csrf_token, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (_digest(session_id), user.id, csrf, to_db(now), to_db(expires)),
            )
            await conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ? "
                "WHERE id = ?",
                (to_db(now), user.id),
            )
            await alert_sql.audit(conn, now, user.name, "console.login", remote=remote)
        return session_id, Session(user, csrf, expires)

    async def session(self, session_id: str) -> Session | None:
        """The live session with this id, or None (unknown, expired, user removed)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT u.*, s.csrf_token, s.expires_at AS session_expires FROM sessions s "
                    "JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ? AND s.expires_at > ?",
                    (_digest(session_id), to_db(now)),
                )
            )
        if not rows:
            return None
        row = rows[0]
        return Session(_user(row), row["csrf_token"], from_db(row["session_expires"]))

    async def end_session(self, session_id: str, actor: str, remote: str | None) -> None:
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="end session") as conn:
            await conn.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_digest(session_id),))
            await alert_sql.audit(conn, now, actor, "console.logout", remote=remote)

    async def audit(
        self, actor: str, action: str, detail: Mapping[str, Any], alert_id: int | None = None
    ) -> None:
        """One audit entry for a console action that has no store method of its own."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="audit") as conn:
            await alert_sql.audit(conn, now, actor, action, alert_id=alert_id, **detail)

    # ---------------------------------------------------------------- invitations

    async def invite(self, name: str, role: Role, lifetime: timedelta, actor: str) -> str | None:
        """A one-time invitation token for a new account ``name``; None when a user of that
        name exists already."""
        now = self._clock.now_utc()
        token = secrets.token_urlsafe(SESSION_ID_BYTES)
        async with self._db.transaction(write=True, what=f"invite {name!r}") as conn:
            taken = list(await conn.execute_fetchall("SELECT 1 FROM users WHERE name = ?", (name,)))
            if taken:
                return None
            await conn.execute(
                "INSERT INTO invitations (token_sha256, name, role, created_by, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (_digest(token), name, role.label, actor, to_db(now), to_db(now + lifetime)),
            )
            await alert_sql.audit(
                conn, now, actor, "user.invited", name=name, role=role.label,
                expires_at=to_db(now + lifetime),
            )  # fmt: skip
        return token

    async def invitation(self, token: str) -> tuple[str, Role] | None:
        """(name, role) of the live, unused invitation with this token, or None."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT name, role FROM invitations WHERE token_sha256 = ? "
                    "AND used_at IS NULL AND expires_at > ?",
                    (_digest(token), to_db(now)),
                )
            )
        return (str(rows[0]["name"]), Role.parse(rows[0]["role"])) if rows else None

    async def accept_invitation(self, token: str, password_hash: str) -> User | None:
        """Use the invitation (once) and create its account; None when the invitation is
        unknown, used, expired, or its name was taken meanwhile (nothing changes then)."""
        now = self._clock.now_utc()
        digest = _digest(token)
        async with self._db.transaction(write=True, what="accept invitation") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT name, role FROM invitations WHERE token_sha256 = ? "
                    "AND used_at IS NULL AND expires_at > ? "
                    "AND NOT EXISTS (SELECT 1 FROM users WHERE users.name = invitations.name)",
                    (digest, to_db(now)),
                )
            )
            if not rows:
                return None
            name, role = str(rows[0]["name"]), str(rows[0]["role"])
            await conn.execute(
                "UPDATE invitations SET used_at = ? WHERE token_sha256 = ?", (to_db(now), digest)
            )
            created = list(
                await conn.execute_fetchall(
                    "INSERT INTO users (name, role, password_hash, created_at, "
                    "password_changed_at) VALUES (?, ?, ?, ?, ?) RETURNING *",
                    (name, role, password_hash, to_db(now), to_db(now)),
                )
            )
            await alert_sql.audit(conn, now, name, "user.invitation_accepted", role=role)
        return _user(created[0])

    async def change_version(self) -> int:
        """The newest audit entry's id: every change to alerts, calls and the rota writes
        one, so the board has changed exactly when this has."""
        async with self._db.transaction(write=False) as conn:
            rows = list(await conn.execute_fetchall("SELECT max(id) AS v FROM audit_log"))
        return int(rows[0]["v"] or 0)

    async def live_attempts(self, alert_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
        """(person, phase) of the calls committed or in progress now, per alert; the phase is
        ``pending`` (about to dial) or ``calling`` (ringing or answered: the store learns
        which only when the call ends)."""
        found: dict[int, list[tuple[str, str]]] = {i: [] for i in alert_ids}
        if not alert_ids:
            return found
        marks = ", ".join("?" for _ in alert_ids)
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT alert_id, person_name, "
                "CASE WHEN state = 'pending' THEN 'pending' ELSE 'calling' END AS phase "
                f"FROM attempts WHERE alert_id IN ({marks}) "
                "AND state IN ('pending', 'in_flight') ORDER BY id",
                alert_ids,
            )
        for row in rows:
            found[int(row["alert_id"])].append((str(row["person_name"]), str(row["phase"])))
        return found
