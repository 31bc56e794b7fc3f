"""``voipalert user add|list|set-role|passwd|remove`` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from voipalert.clock import SystemClock
from voipalert.console.passwords import verify_password
from voipalert.store import Store
from voipalert.store.users import Role, User, UserTables

REPO = Path(__file__).resolve().parents[2]


def user(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env |= {"PYTHONPATH": str(REPO), "VOIPALERT_DATABASE__PATH": str(tmp_path / "users.db")}
    return subprocess.run(
        [sys.executable, "-m", "voipalert", "user", *args], input=stdin, capture_output=True,
        text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip


async def _user(tmp_path: Path, name: str) -> User | None:
    async with await Store.open(tmp_path / "users.db", SystemClock()) as store:
        return await UserTables(store, SystemClock()).get_user(name)


async def _session(tmp_path: Path, name: str) -> str:
    async with await Store.open(tmp_path / "users.db", SystemClock()) as store:
        tables = UserTables(store, SystemClock())
        found = await tables.get_user(name)
        assert found is not None
        session_id, _ = await tables.start_session(found, timedelta(hours=1), None, None)
        return session_id


async def _session_alive(tmp_path: Path, session_id: str) -> bool:
    async with await Store.open(tmp_path / "users.db", SystemClock()) as store:
        return await UserTables(store, SystemClock()).session(session_id) is not None


def test_user_lifecycle(tmp_path: Path) -> None:
    added = user(tmp_path, "add", "alma", "--role", "responder", "--password-stdin",
                 stdin="a long passphrase\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "user alma added (role responder)" in added.stdout
    stored = asyncio.run(_user(tmp_path, "alma"))
    assert stored is not None and stored.password_hash.startswith("scrypt$14$8$5$")
    assert "a long passphrase" not in stored.password_hash
    assert verify_password("a long passphrase", stored.password_hash)

    again = user(tmp_path, "add", "alma", "--password-stdin", stdin="another passphrase\n")
    assert again.returncode == 1 and "already exists" in again.stderr

    listed = json.loads(user(tmp_path, "list", "--json").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("alma", "responder")]

    assert user(tmp_path, "set-role", "alma", "manager").returncode == 0
    stored = asyncio.run(_user(tmp_path, "alma"))
    assert stored is not None and stored.role.label == "manager"

    session_id = asyncio.run(_session(tmp_path, "alma"))
    assert asyncio.run(_session_alive(tmp_path, session_id))
    changed = user(tmp_path, "passwd", "alma", "--generate")
    assert changed.returncode == 0
    new_password = changed.stdout.split("password (shown only now): ")[1].split()[0]
    stored = asyncio.run(_user(tmp_path, "alma"))
    assert stored is not None and verify_password(new_password, stored.password_hash)
    assert not asyncio.run(_session_alive(tmp_path, session_id))  # sessions ended

    assert user(tmp_path, "remove", "alma").returncode == 0
    assert user(tmp_path, "remove", "alma").returncode == 1
    assert asyncio.run(_user(tmp_path, "alma")) is None


def test_bad_names_and_short_passwords_are_refused(tmp_path: Path) -> None:
    bad = user(tmp_path, "add", "../x", "--password-stdin", stdin="a long passphrase\n")
    assert bad.returncode == 2 and "user name" in bad.stderr
    short = user(tmp_path, "add", "bo", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    assert json.loads(user(tmp_path, "list", "--json").stdout) == []


def test_invite_prints_a_one_time_link(tmp_path: Path) -> None:
    invited = user(tmp_path, "invite", "noor", "--role", "manager", "--url", "https://ops.example/")
    assert invited.returncode == 0, invited.stderr
    link = invited.stdout.split("https://ops.example/invite/")[1].split()[0]
    assert len(link) >= 40
    found = asyncio.run(_invitation(tmp_path, link))
    assert found is not None and found[0] == "noor" and found[1].label == "manager"
    assert user(tmp_path, "add", "taken", "--generate").returncode == 0
    again = user(tmp_path, "invite", "taken")
    assert again.returncode == 1 and "already exists" in again.stderr


async def _invitation(tmp_path: Path, token: str) -> tuple[str, Role] | None:
    async with await Store.open(tmp_path / "users.db", SystemClock()) as store:
        return await UserTables(store, SystemClock()).invitation(token)
