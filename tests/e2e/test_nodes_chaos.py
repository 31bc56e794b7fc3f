"""Three ``voipalert serve`` nodes on one real PostgreSQL, calling phone bots of the SIP
testbed (docs/multi-node.md, issue 15): alerts posted to different nodes, every phone
ringing (``noanswer`` bots: a call stays in flight until it is stopped), then the node with
the most calls in flight is SIGKILLed. Invariants:

- another node takes each of the dead node's alerts over and dials again (new keys),
  within ``lease_seconds * 4/3`` + one engine pass (+ slack for a busy 2-core machine);
- no attempt key is started twice (one ``attempt.dialling`` entry per attempt in the
  append-only audit log; the dead node's calls are the ``interrupted`` ones);
- acks through the API of a node that does *not* hold the alert reach the holder (NOTIFY),
  which stops its call; every alert ends acknowledged;
- the live nodes' APIs answer throughout, and they stop cleanly (exit 0) at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.e2e.server import REPO, Server
from tests.net.sip_harness import free_port
from tests.store.conftest import PgServer, new_pg_database
from tests.store.conftest import pg_server as pg_server  # the session's PostgreSQL

BOTS = [f"load{n:02d}" for n in range(1, 7)]
# Three serves, PostgreSQL and the testbed, with take-over bounds: alone on the machine.
pytestmark = pytest.mark.alone

# Each node registers with an account of its own (deploy/ha.md; the testbed's Kamailio
# keeps at most two contacts per account).
ACCOUNTS = ("voipalert", "voipalert2", "alice")
LEASE_SECONDS = 3.0
TICK_SECONDS = 1.0  # [engine] idle_poll_seconds of the nodes
SLACK_SECONDS = 10.0  # a loaded 2-core machine: reported, not a measurement


def _rota(testbed: Testbed) -> str:
    people = "".join(
        f"  - name: {bot}-person\n    language: en\n    contacts:\n"
        f"      - sip: {testbed.uri(bot)}\n"
        for bot in BOTS
    )
    policies = "".join(
        f"  - name: p-{bot}\n    repeat: 0\n    steps:\n      - targets:\n"
        f"          - person: {bot}-person\n        timeout: 120s\n        ring_timeout: 90s\n"
        for bot in BOTS
    )
    members = ", ".join(f"{bot}-person" for bot in BOTS)
    return (
        f"version: 1\npeople:\n{people}teams:\n  - name: everyone\n    members: [{members}]\n"
        f"policies:\n{policies}routes:\n  - name: all\n    default: true\n"
        f"    policy: p-{BOTS[0]}\n    team: everyone\n"
    )


def _node(
    directory: Path, testbed: Testbed, url: str, cache: Path, secret: Path, account: str
) -> Server:
    directory.mkdir()
    rtp = free_port(even=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "VOIPALERT_DATABASE__URL": url,
        "VOIPALERT_HTTP__SECRET_FILE": str(secret),  # one server key for all the nodes
        "VOIPALERT_CLUSTER__LEASE_SECONDS": str(LEASE_SECONDS),
        "VOIPALERT_SIP__REGISTRAR": testbed.registrar,
        "VOIPALERT_SIP__USERNAME": account,
        "VOIPALERT_SIP__PASSWORD": testbed.users[account],
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port()),
        "VOIPALERT_MEDIA__RTP_PORT_MIN": str(rtp),
        "VOIPALERT_MEDIA__RTP_PORT_MAX": str(rtp + 99),
        "VOIPALERT_HTTP__PORT": str(free_port(socket.SOCK_STREAM)),
        "VOIPALERT_TTS__CACHE_DIR": str(cache),
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
        "VOIPALERT_ENGINE__IDLE_POLL_SECONDS": str(TICK_SECONDS),
        "VOIPALERT_CALL__REPETITIONS": "1",
    }
    return Server(directory, env, int(env["VOIPALERT_HTTP__PORT"]))


async def _rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _healthy(server: Server) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _all_ready(nodes: list[Server]) -> bool:
    """Every node's /readyz answers 200: database readable, registered with its account."""
    for node in nodes:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{node.url}/readyz") as r:
                if r.status != 200:
                    return False
        except aiohttp.ClientError:
            return False
    return True


async def _until(check: Any, what: str, seconds: float) -> float:
    """Poll ``check`` (an async callable) until true; the seconds it took."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while not await check():  # noqa: ASYNC110 - polls the database and the APIs
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {seconds:.0f} s: {what}") from None
    return time.monotonic() - started


async def test_three_nodes_one_killed(
    pg_server: PgServer,
    testbed_factory: TestbedFactory,
    tmp_path: Path,
) -> None:
    testbed = testbed_factory([BotSpec(bot, "noanswer") for bot in BOTS])
    url = await new_pg_database(pg_server)
    cache, secret = tmp_path / "cache", tmp_path / "store.secret"
    nodes = [
        _node(tmp_path / f"node{n}", testbed, url, cache, secret, account)
        for n, account in enumerate(ACCOUNTS)
    ]
    first = nodes[0]
    (first.directory / "rota.yaml").write_text(_rota(testbed))
    imported = await asyncio.to_thread(first.cli, "rota", "import", "rota.yaml")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    created = await asyncio.to_thread(
        first.cli, "token", "create", "t", "--scope", "admin", "--json"
    )
    assert created.returncode == 0, created.stderr
    for node in nodes:
        node.token = json.loads(created.stdout)["token"]
    try:
        started = time.monotonic()
        await asyncio.gather(*(node.start() for node in nodes))
        await _until(lambda: _all_ready(nodes), "every node ready (registered)", 30)
        print(f"three nodes started in {time.monotonic() - started:.1f} s")
        await _chaos(url, nodes)
    finally:
        for node in nodes:
            status = node.stop()
            assert status in (0, None, -signal.SIGKILL), node.log.read_text()[-3000:]


async def _chaos(url: str, nodes: list[Server]) -> None:
    alerts: list[int] = []
    for n, bot in enumerate(BOTS):
        node = nodes[n % len(nodes)]
        status, body = await node.request(
            "POST", "/api/v1/alerts", {"summary": f"disk {n} full", "policy": f"p-{bot}"}
        )
        assert status == 202, body
        alerts.append(body["id"])

    async def all_ringing() -> bool:
        rows = await _rows(url, "SELECT count(*) FROM attempts WHERE state = 'in_flight'")
        return int(rows[0][0]) == len(alerts)

    await _until(all_ringing, "every alert's phone rings", 40)
    # The victim: the node with the most calls in flight.
    holders = await _rows(
        url, "SELECT n.id, n.pid, count(*) AS calls FROM attempts a JOIN nodes n "
        "ON n.id = a.node WHERE a.state = 'in_flight' GROUP BY n.id, n.pid ORDER BY calls DESC",
    )  # fmt: skip
    victim_id, victim_pid, calls = holders[0]["id"], holders[0]["pid"], holders[0]["calls"]
    victim = next(n for n in nodes if n.process is not None and n.process.pid == victim_pid)
    live = [n for n in nodes if n is not victim]
    taken = await _rows(url, "SELECT alert_id FROM attempts WHERE node = $1", victim_id)
    victim_alerts = sorted(r["alert_id"] for r in taken)
    victim.stop(signal.SIGKILL)
    killed = time.monotonic()

    async def taken_over() -> bool:
        assert all([await _healthy(n) for n in live]), "a live node's API stopped answering"
        rows = await _rows(
            url, "SELECT DISTINCT alert_id FROM attempts WHERE alert_id = ANY($1) "
            "AND started_at IS NOT NULL AND node IS DISTINCT FROM $2", victim_alerts, victim_id,
        )  # fmt: skip
        return len(rows) == len(victim_alerts)

    await _until(taken_over, "the dead node's alerts are dialled by another node", 40)
    took = time.monotonic() - killed
    print(f"take-over of {len(victim_alerts)} alert(s) ({calls} call(s)): {took:.1f} s")
    bound = LEASE_SECONDS * 4 / 3 + TICK_SECONDS
    assert took < bound + SLACK_SECONDS, (took, bound)

    # Acks through a node that does not hold the alert: the holder hears it (NOTIFY).
    for alert_id in alerts:
        lease = await _rows(
            url, "SELECT n.pid FROM alerts a JOIN nodes n ON n.id = a.lease_node WHERE a.id = $1",
            alert_id,
        )  # fmt: skip
        holder = lease[0]["pid"] if lease else None
        via = next(n for n in live if n.process is not None and n.process.pid != holder)
        status, body = await via.request("POST", f"/api/v1/alerts/{alert_id}/ack", {})
        assert status == 200, body

    async def calls_ended() -> bool:
        rows = await _rows(
            url, "SELECT count(*) FROM attempts WHERE state IN ('pending', 'in_flight')"
        )
        return int(rows[0][0]) == 0

    stopped = await _until(calls_ended, "every call stopped after the acks", 30)
    print(f"every call stopped {stopped:.1f} s after the last ack")
    statuses = await _rows(url, "SELECT DISTINCT status FROM alerts")
    assert [r["status"] for r in statuses] == ["acknowledged"]

    dialled_twice = await _rows(
        url, "SELECT attempt_id, count(*) FROM audit_log WHERE action = 'attempt.dialling' "
        "GROUP BY attempt_id HAVING count(*) > 1",
    )  # fmt: skip
    assert dialled_twice == []
    keys = await _rows(
        url, "SELECT alert_id, esc_repeat, esc_step, person_name, attempt_no, count(*) "
        "FROM attempts GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1",
    )  # fmt: skip
    assert keys == []
    interrupted = await _rows(url, "SELECT node FROM attempts WHERE state = 'interrupted'")
    assert [r["node"] for r in interrupted] == [victim_id] * calls
    # The live nodes end cleanly: their leases are released on the way out.
    for node in live:
        assert node.stop() == 0, node.log.read_text()[-3000:]
    held = await _rows(url, "SELECT count(*) FROM alerts WHERE lease_node IS NOT NULL")
    assert int(held[0][0]) == 0
