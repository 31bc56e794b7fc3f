"""``voipalert user set-pin`` as an operator runs it: only for people of the rota, only
4-8 digits, stored as a digest that identifies the person."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cli.test_user_cmd import user
from voipalert.clock import SystemClock
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
policies:
  - name: default
    steps: [{targets: [{person: alice}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


async def _setup(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "users.db", SystemClock()) as store:
        await store.replace_rota(parse_rota(ROTA))


async def _who(tmp_path: Path, pin: str) -> tuple[str | None, bool]:
    async with await Store.open(tmp_path / "users.db", SystemClock()) as store:
        person = await store.callin_person("alice")
        return await store.callin_check_pin(pin, None), bool(person and person.may_resolve)


def test_set_pin(tmp_path: Path) -> None:
    asyncio.run(_setup(tmp_path))
    done = user(tmp_path, "set-pin", "alice", "--may-resolve", stdin="4711\n")
    assert done.returncode == 0, done.stderr
    assert "call-in PIN of alice set (may resolve by phone)" in done.stdout
    assert asyncio.run(_who(tmp_path, "4711")) == ("alice", True)
    bad = user(tmp_path, "set-pin", "alice", stdin="12\n")
    assert bad.returncode == 2 and "4 to 8 digits" in bad.stderr
    nobody = user(tmp_path, "set-pin", "mallory", stdin="1234\n")
    assert nobody.returncode == 1 and "no person named 'mallory'" in nobody.stderr
    cleared = user(tmp_path, "set-pin", "alice", "--clear")
    assert cleared.returncode == 0 and "cleared" in cleared.stdout
    assert asyncio.run(_who(tmp_path, "4711")) == (None, False)
