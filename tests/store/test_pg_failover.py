"""A real database primary failover (docs/database-failover.md): a PostgreSQL 15 primary and
a streaming-replication standby made with ``pg_basebackup -R``, both started here on
127.0.0.1 in a temporary directory, the primary committing synchronously to the standby
(``synchronous_standby_names = '*'``). ``[database] url`` names both hosts, as libpq does.

The primary is stopped as a crash would (``pg_ctl stop -m immediate``); while no primary
exists the HTTP intake answers 503 and the store refuses to write to the read-only standby
with one clear log line; the standby is promoted (``pg_ctl promote``) and the same store,
cluster node, engine and HTTP app carry on: every alert answered 202 before the failover
is on the new primary, a new alert is accepted and dialled, no key is dialled twice. The
times from the primary's death to the first write and to the next dial are printed
(deploy/ha.md quotes them: ``pytest -s tests/store/test_pg_failover.py``). The last test
does the same under a real ``voipalert serve`` process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.net.sip_harness import free_port
from tests.requires import need
from tests.store.conftest import PG_BIN, _as_postgres, _has_user
from tests.store.test_cluster import Phone
from tests.store.test_engine_lock import ROTA as SERVE_ROTA
from tests.store.test_serve_postgresql import _env, _ready, _run, _spawn
from tests.test_engine import ROTA, START
from voipalert.clock import FakeClock
from voipalert.engine import Engine, EngineConfig
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Scope, Store, StoreConfig
from voipalert.store.cluster import ClusterNode
from voipalert.store.errors import DatabaseUnusable, StoreError
from voipalert.store.pg_url import host_urls, shown_url, target_session_attrs

DATABASE = "voipalert"
BEFORE = 20  # alerts accepted before the failover
_probes = itertools.count()


def _pg(*args: str, timeout: float = 90) -> None:
    subprocess.run(
        [*_as_postgres(), *args], check=True, capture_output=True, timeout=timeout
    )  # fmt: skip


@dataclass(frozen=True)
class Pair:
    """A primary and its synchronous standby, each a data directory and a port."""

    top: Path
    primary_port: int
    standby_port: int

    def url(self, database: str = DATABASE, query: str = "target_session_attrs=read-write") -> str:
        hosts = f"127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}"
        return f"postgresql://postgres@{hosts}/{database}?{query}"

    def one(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def ctl(self, which: str, *args: str) -> None:
        _pg(str(PG_BIN / "pg_ctl"), "-D", str(self.top / which), *args)

    def start(self, which: str, port: int, extra: str = "") -> None:
        # fsync off: the test crashes processes, never the machine (the OS keeps what was
        # written). The primary's own settings come from the command line, so the standby
        # copied by pg_basebackup does not inherit synchronous_standby_names: promoted, it
        # has no standby to wait for (docs/database-failover.md, "After the failover").
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {self.top / 'run'} -c fsync=off "
            f"-c full_page_writes=off {extra}"
        )
        self.ctl(which, "-l", str(self.top / f"{which}.log"), "-o", options, "-w", "-t", "60",
                 "start")  # fmt: skip


@pytest.fixture
def pair() -> Iterator[Pair]:
    need(
        (PG_BIN / "pg_basebackup").exists() and (os.geteuid() != 0 or _has_user("postgres")),
        "needs PostgreSQL 15 (apt-get install -y postgresql)",
    )
    top = Path(tempfile.mkdtemp(prefix="voipalert-pgha-"))
    (top / "run").mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (top, top / "run"):
            os.chown(path, user.pw_uid, user.pw_gid)
    made = Pair(top, free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM))
    try:
        _pg(str(PG_BIN / "initdb"), "-D", str(top / "primary"), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", timeout=120)  # fmt: skip
        # '*': any standby is the synchronous one; a commit returns once it is on both.
        # (pg_ctl hands -o to a shell: the quotes keep the star from globbing.)
        made.start("primary", made.primary_port, "-c synchronous_standby_names='*'")
        _pg(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(made.primary_port),
            "-U", "postgres", "-D", str(top / "standby"), "-R", "-X", "stream", "-c", "fast",
            "--no-sync")  # fmt: skip
        made.start("standby", made.standby_port)
        yield made
    finally:
        for which in ("standby", "primary"):
            with suppress(subprocess.SubprocessError):
                made.ctl(which, "-m", "immediate", "stop")
        shutil.rmtree(top, ignore_errors=True)


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _until(what: str, seconds: float, check: Callable[[], Awaitable[bool]]) -> None:
    del what  # says what is awaited, for the reader of a timeout's traceback
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - polls the server
            await asyncio.sleep(0.05)


@dataclass
class Running:
    store: Store
    phone: Phone
    api: str
    http: aiohttp.ClientSession
    cluster: ClusterNode

    async def post(self, summary: str) -> tuple[int, int | None]:
        async with self.http.post(f"{self.api}/api/v1/alerts", json={"summary": summary}) as r:
            body = await r.json()
            return r.status, body.get("id") if r.status == 202 else None


@pytest.fixture
async def running(pair: Pair, tmp_path: Path) -> AsyncIterator[Running]:
    admin = await asyncpg.connect(pair.one(pair.primary_port, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        # The standby is the synchronous one: every commit below waits for it.
        await _until("the standby streams synchronously", 30, lambda: _sync(admin))
    finally:
        await admin.close()
    clock = FakeClock(START)
    store = await Store.open(pair.url(), clock, StoreConfig(secret_file=tmp_path / "secret"))
    await store.replace_rota(parse_rota(ROTA))
    _, token = await store.create_api_token("am", frozenset({Scope.TRIGGER}))
    phone = Phone()
    engine = Engine(store, phone, clock, EngineConfig(idle_poll_seconds=3600))
    cluster = await store.join_cluster(3.0, engine.wake)
    assert cluster is not None
    app = build_app(
        store, wake=engine.wake, sip_state=lambda: SipState.REGISTERED, config=IngestConfig(),
        clock=clock,
    )  # fmt: skip
    runner, port = await start_http(app, "127.0.0.1", 0)
    tasks = [asyncio.create_task(engine.run()), asyncio.create_task(cluster.run())]
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            await asyncio.wait_for(cluster.listening.wait(), 20)
            yield Running(store, phone, f"http://127.0.0.1:{port}", http, cluster)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        with suppress(StoreError):
            await store.close()


async def _sync(admin: asyncpg.Connection) -> bool:
    return bool(await admin.fetchval("SELECT count(*) FROM pg_stat_replication "
                                     "WHERE sync_state = 'sync'"))  # fmt: skip


async def test_a_primary_failover(
    pair: Pair, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "voipalert.store")
    caplog.set_level(logging.WARNING, "voipalert.engine")
    accepted = []
    for n in range(BEFORE):
        status, alert_id = await running.post(f"before the failover {n}")
        assert status == 202
        accepted.append(alert_id)

    async def all_dialled() -> bool:
        return len(running.phone.keys) >= BEFORE

    await _until("each alert's first call", 30, all_dialled)
    dialled_before = len(running.phone.keys)

    loop = asyncio.get_running_loop()
    died = loop.time()
    await asyncio.to_thread(pair.ctl, "primary", "-m", "immediate", "stop")

    # No primary: the standby is read-only and the old primary is gone.
    for n in range(5):
        status, _ = await running.post(f"during the failover {n}")
        assert status == 503
    with pytest.raises(StoreError, match="read-only"):
        await _write_now(running.store)
    http = [
        r for r in caplog.records if r.name == "voipalert.http" and r.levelno >= logging.WARNING
    ]
    assert len(http) == 5
    # Only the request that met the broken connection is logged with a traceback; the
    # others say in one line that no host accepts writes.
    assert sum(r.exc_info is not None for r in http) <= 1, [r.getMessage() for r in http]
    told = [r.getMessage() for r in caplog.records if "no write is possible" in r.getMessage()]
    assert len(told) == 1, told  # one line per outage, not one per refused write
    assert f"127.0.0.1:{pair.standby_port} is read-only" in told[0]
    assert f"127.0.0.1:{pair.primary_port}: " in told[0]  # and why the old one failed

    promoting = loop.time()
    await asyncio.to_thread(pair.ctl, "standby", "-w", "promote")
    promoted = loop.time()
    while True:
        status, alert_id = await running.post("after the failover")
        if status == 202:
            break
        assert status == 503
        await asyncio.sleep(0.05)
    written = loop.time()

    async def dialled_again() -> bool:
        return len(running.phone.keys) > dialled_before

    await _until("the new alert's first call", 20, dialled_again)
    dialled = loop.time()
    print(
        f"\nprimary killed -> standby promoted (pg_ctl promote -w took "
        f"{promoted - promoting:.2f} s): first 202 {written - died:.2f} s, "
        f"first dial {dialled - died:.2f} s after the primary's death; "
        f"after the promotion: {written - promoted:.2f} s, {dialled - promoted:.2f} s"
    )
    assert any("reconnected to" in r.getMessage() for r in caplog.records)
    # The engine kept ticking through the outage: one line when it began to wait and one
    # when the database came back, not a traceback per tick or per alert. What was under
    # way when the connection broke (a call's outcome being written, the alert the pass was
    # at) may each log one; the outage's length and the number of alerts add none.
    engine = [r for r in caplog.records if r.name == "voipalert.engine"]
    assert sum(r.exc_info is not None for r in engine) <= 2, [r.getMessage() for r in engine]
    waits = [r.getMessage() for r in engine if "waits for the database" in r.getMessage()]
    assert len(waits) <= 1, waits

    # Every alert answered 202 is on the new primary: each commit was on the standby too.
    rows = await _fetch(pair.one(pair.standby_port), "SELECT id FROM alerts")
    assert set(accepted) | {alert_id} <= {r["id"] for r in rows}
    assert max(Counter(running.phone.keys).values()) == 1  # no key dialled twice

    async def listening_again() -> bool:
        return running.cluster.listens >= 2 and running.cluster.listening.is_set()

    await _until("the LISTEN connection is on the new primary", 20, listening_again)


async def _write_now(store: Store) -> None:
    """A write past the reconnection pause: the next try asks every host again."""
    await asyncio.sleep(0.6)
    await store.create_api_token(f"probe{next(_probes)}", frozenset({Scope.READ}))


def test_several_hosts_are_tried_in_order() -> None:
    url = "postgresql://u:secret@db1:5432,db2:5433/x?target_session_attrs=primary"
    assert host_urls(url) == [
        ("db1:5432", "postgresql://u:secret@db1:5432/x?target_session_attrs=primary"),
        ("db2:5433", "postgresql://u:secret@db2:5433/x?target_session_attrs=primary"),
    ]
    assert shown_url(url) == "postgresql://u:***@db1:5432,db2:5433/x?target_session_attrs=primary"
    assert target_session_attrs(url) == "primary"
    assert target_session_attrs("postgresql://u@db/x") == "read-write"
    one = "postgresql://u@[::1]:5432/x"
    assert host_urls(one) == [("[::1]:5432", one)]


@pytest.mark.parametrize("attrs", ["any", "read-only", "standby", "prefer-standby", "bogus"])
def test_a_url_that_may_choose_a_standby_is_refused(attrs: str) -> None:
    with pytest.raises(DatabaseUnusable, match="voipalert writes") as caught:
        target_session_attrs(f"postgresql://u:pw@db1,db2/x?target_session_attrs={attrs}")
    assert caught.value.configuration
    assert "pw" not in str(caught.value)


async def test_a_primary_made_read_only_is_left_for_the_primary(
    pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server under an open connection stops taking writes (an operator's
    ``default_transaction_read_only``, as some failover tools set on a demoted primary):
    the refused write drops the connection, one line says why, and the store writes again
    once a host accepts writes, never keeping a session that cannot."""
    caplog.set_level(logging.WARNING, "voipalert.store")
    admin = await asyncpg.connect(pair.one(pair.primary_port, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        store = await Store.open(
            pair.url(), FakeClock(START), StoreConfig(secret_file=tmp_path / "secret")
        )
        try:
            await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            await admin.execute("SELECT pg_reload_conf()")

            names = iter(range(1000))

            async def refused() -> bool:
                try:
                    await store.create_api_token(f"t{next(names)}", frozenset({Scope.READ}))
                except StoreError as exc:
                    return "read-only" in str(exc)
                return False

            await _until("the write is refused", 10, refused)
            said = [r.getMessage() for r in caplog.records]
            assert any("refused a write: it is read-only now" in m for m in said), said
            with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{pair.primary_port} is read-only"):
                await _write_now(store)
            await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
            await admin.execute("SELECT pg_reload_conf()")
            await _write_now(store)
        finally:
            await store.close()
    finally:
        await admin.close()


async def test_serve_rides_through_a_primary_failover(pair: Pair, tmp_path: Path) -> None:
    """The same switch-over under a real ``voipalert serve``: it answers 503 while no
    primary exists, never exits, accepts and plans alerts on the promoted standby, and
    stops cleanly."""
    admin = await asyncpg.connect(pair.one(pair.primary_port, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        await _until("the standby streams synchronously", 30, lambda: _sync(admin))
    finally:
        await admin.close()
    env = _env(tmp_path, pair.url())
    (tmp_path / "rota.yaml").write_text(SERVE_ROTA)
    imported = await asyncio.to_thread(_run, env, tmp_path, "rota", "import", "rota.yaml")
    assert imported.returncode == 0, imported.stderr
    created = await asyncio.to_thread(
        _run, env, tmp_path, "token", "create", "t", "--scope", "admin", "--json"
    )
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['token']}"}
    api = f"http://127.0.0.1:{env['VOIPALERT_HTTP__PORT']}"
    serve = _spawn(env, tmp_path)
    try:
        await _ready(api, serve)
        async with aiohttp.ClientSession(headers=headers) as http:

            async def post(summary: str) -> tuple[int, Any]:
                async with http.post(f"{api}/api/v1/alerts", json={"summary": summary}) as r:
                    return r.status, await r.json()

            before = [await post(f"before {n}") for n in range(5)]
            assert [status for status, _ in before] == [202] * 5
            await asyncio.to_thread(pair.ctl, "primary", "-m", "immediate", "stop")
            for n in range(3):
                status, body = await post(f"during {n}")
                assert status == 503, body
            await asyncio.to_thread(pair.ctl, "standby", "-w", "promote")
            async with asyncio.timeout(30):
                while (answer := await post("after"))[0] != 202:
                    assert answer[0] == 503, answer
                    await asyncio.sleep(0.1)
            alert_id = answer[1]["id"]
            async with asyncio.timeout(30):
                while True:  # the engine planned it on the new primary
                    async with http.get(f"{api}/api/v1/alerts/{alert_id}") as r:
                        if (await r.json()).get("attempts"):
                            break
                    assert serve.poll() is None
                    await asyncio.sleep(0.2)
        rows = await _fetch(pair.one(pair.standby_port), "SELECT id FROM alerts")
        assert {body["id"] for _, body in before} <= {r["id"] for r in rows}
        assert serve.poll() is None
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
        out, _ = await asyncio.to_thread(serve.communicate, timeout=60)
    assert serve.returncode == 0, out[-3000:]
    assert "reconnected to postgresql://" in out, out[-3000:]
