"""Issue 15's "Done when" chaos test (docs/multi-node.md): three ``voipalert serve`` nodes on
one real PostgreSQL, phone bots of the SIP testbed that answer and press 1. Alerts are
posted through the API of all three nodes (``CHAOS_ALERTS``, 300 by default); one node is
SIGKILLed while it has calls in flight, another in the middle of the intake burst; both
are restarted. Invariants:

- every alert answered 202 exists exactly once (one row per dedup key; a post that met a
  dead node is posted again to another with the same key, which joins it);
- every alert ends acknowledged, by a bot's key press;
- no attempt key is dialled twice (one ``attempt.dialling`` audit entry per attempt, one
  attempt row per key);
- each escalation the killed nodes held is adopted by a live node (or acknowledged) within
  the documented bound, ``4/3 * lease_seconds`` + one engine pass (+ slack for a loaded
  2-core machine), though every line of the survivors may be busy; the first call after
  adoption waits for a line and is printed, not asserted;
- the API (``/healthz``) of every live node answers throughout.

Opt-in (``pytest -m soak``): with 300 alerts it takes minutes on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from testbed import BotSpec, Testbed, group_members

from tests.conftest import TestbedFactory
from tests.e2e.server import Server
from tests.e2e.test_nodes_chaos import (
    ACCOUNTS,
    LEASE_SECONDS,
    SLACK_SECONDS,
    TICK_SECONDS,
    _all_ready,
    _node,
    _rows,
    _until,
)
from tests.store.conftest import PgServer, new_pg_database
from tests.store.conftest import pg_server as pg_server  # the session's PostgreSQL

pytestmark = pytest.mark.soak

ALERTS = int(os.environ.get("CHAOS_ALERTS", "300"))
BOTS = [f"load{n:02d}" for n in range(11, 21)]  # answer and press 1 (dtmf mode)
POSTERS = 6  # requests in flight at once, over the three nodes
BOUND = LEASE_SECONDS * 4 / 3 + TICK_SECONDS


def _rota(testbed: Testbed) -> str:
    """One person per bot, one policy per person: ring for 8 s, and again 2 s later, up to
    200 times. A bot busy with another alert's call answers 486 at once: with calls no
    longer queued behind a node's lines (docs/multi-node.md, "The take respects free
    lines"), an alert whose bot stays busy tried again at once ran through 60 repeats
    within the run and ended closed unacknowledged (one run of three)."""
    people = "".join(
        f"  - name: {bot}-person\n    language: en\n    contacts:\n"
        f"      - sip: {testbed.uri(bot)}\n"
        for bot in BOTS
    )
    policies = "".join(
        f"  - name: p-{bot}\n    repeat: 200\n    repeat_delay: 2s\n    steps:\n"
        "      - targets:\n"
        f"          - person: {bot}-person\n        timeout: 10s\n        ring_timeout: 8s\n"
        for bot in BOTS
    )
    members = ", ".join(f"{bot}-person" for bot in BOTS)
    return (
        f"version: 1\npeople:\n{people}teams:\n  - name: everyone\n    members: [{members}]\n"
        f"policies:\n{policies}routes:\n  - name: all\n    default: true\n"
        f"    policy: p-{BOTS[0]}\n    team: everyone\n"
    )


@dataclass
class Run:
    url: str
    nodes: list[Server]
    down: set[int] = field(default_factory=set)  # indexes of the nodes killed, not back
    accepted: dict[str, int] = field(default_factory=dict)  # dedup key -> alert id (202)
    reposted: int = 0
    unanswered: list[str] = field(default_factory=list)  # a live node's API did not answer
    health_checks: int = 0

    def live(self) -> list[Server]:
        return [n for i, n in enumerate(self.nodes) if i not in self.down]


async def _post(run: Run, http: aiohttp.ClientSession, n: int, node_order: int) -> None:
    key = f"chaos-{n}"
    body = {"summary": f"disk {n} full", "policy": f"p-{BOTS[n % len(BOTS)]}", "dedup_key": key}
    for attempt in itertools.count():
        live = run.live()
        node = live[(node_order + attempt) % len(live)]
        headers = {"Authorization": f"Bearer {node.token}"}
        try:
            async with http.post(
                f"{node.url}/api/v1/alerts", json=body, headers=headers
            ) as response:
                if response.status == 202:
                    alert_id = (await response.json())["id"]
                    assert run.accepted.setdefault(key, alert_id) == alert_id
                    return
                text = await response.text()
                assert response.status == 503, (response.status, text)  # database busy
        except (aiohttp.ClientError, TimeoutError):
            pass  # the node was killed under the request: post it elsewhere, same key
        run.reposted += 1
        assert attempt < 20, f"alert {key} never accepted"
        await asyncio.sleep(0.2)


async def _intake(run: Run, first: int, last: int) -> None:
    numbers = iter(range(first, last))
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def poster(p: int) -> None:
            for n in numbers:
                await _post(run, http, n, n + p)

        await asyncio.gather(*(poster(p) for p in range(POSTERS)))


async def _watch_health(run: Run, stop: asyncio.Event) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set():
            for i, node in enumerate(run.nodes):
                if i in run.down:
                    continue
                try:
                    async with http.get(f"{node.url}/healthz") as response:
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if not ok and i not in run.down:
                    run.unanswered.append(f"node{i} at {time.monotonic():.1f}")
                run.health_checks += 1
            try:
                async with asyncio.timeout(0.5):
                    await stop.wait()
            except TimeoutError:
                pass


async def _kill(run: Run, victim: Server) -> tuple[float, str, list[int]]:
    """SIGKILL ``victim``; when, its node id, and the unacknowledged alerts it held."""
    pid = victim.process.pid if victim.process is not None else -1
    rows = await _rows(
        run.url, "SELECT n.id, a.id AS alert FROM nodes n LEFT JOIN alerts a ON "
        "a.lease_node = n.id AND a.status = 'triggered' WHERE n.pid = $1 "
        "AND NOT n.stopping ORDER BY n.started_at DESC", pid,
    )  # fmt: skip
    # No await between the two: the health watch never sees the dead node as live, but
    # the posts in flight to it fail and are posted again elsewhere.
    victim.stop(signal.SIGKILL)
    run.down.add(run.nodes.index(victim))
    killed = time.monotonic()
    node_id = rows[0]["id"] if rows else ""
    return killed, node_id, sorted(r["alert"] for r in rows if r["alert"] is not None)


async def _resumed(run: Run, node_id: str, alerts: list[int], killed: float) -> float:
    """Seconds until every alert ``node_id`` held was adopted: its lease taken by another
    node (which, in the same transaction, interrupted the dead node's calls and then
    re-plans: the next call is due when the policy says), or the alert acknowledged.
    Adoption does not wait for a free line (docs/multi-node.md, "How work is claimed")."""

    async def done() -> bool:
        if not alerts:
            return True
        rows = await _rows(
            run.url, "SELECT id FROM alerts WHERE id = ANY($1) AND (status <> 'triggered' "
            "OR (lease_node IS NOT NULL AND lease_node <> $2))", alerts, node_id,
        )  # fmt: skip
        return len(rows) == len(alerts)

    await _until(done, f"the alerts of node {node_id} adopted", BOUND + SLACK_SECONDS + 30)
    return time.monotonic() - killed


async def _called(run: Run, node_id: str, alerts: list[int], killed: float) -> float:
    """Seconds until every alert ``node_id`` held had a call started by another node since
    its death (or was acknowledged). The adopted call goes first in its node's line queue
    but still waits for a line: with every line busy, for a call to end."""

    async def done() -> bool:
        if not alerts:
            return True
        rows = await _rows(
            run.url, "SELECT id FROM alerts a WHERE id = ANY($1) AND (status <> 'triggered' "
            "OR EXISTS (SELECT 1 FROM attempts t WHERE t.alert_id = a.id "
            "AND t.started_at IS NOT NULL AND t.node IS DISTINCT FROM $2))", alerts, node_id,
        )  # fmt: skip
        return len(rows) == len(alerts)

    await _until(done, f"the alerts of node {node_id} called again", 600)
    return time.monotonic() - killed


def _phones_yield_to_the_nodes(testbed: Testbed) -> None:
    """The ten phones are baresip processes on the same two cores as the three nodes; in a
    deployment they are people's phones elsewhere. At 300 alerts they took about 1.4 cores,
    the load average reached 30-50, and nodes went 6-8 s without a core (their logs: "event
    loop stalled 5709 ms (preempted: ... waiting for a core 8028 ms)"), which failed the
    health check on the machine, not on voipalert. Every thread of the phones runs at nice
    10, so a node that is runnable gets a core first; the nodes, PostgreSQL and Kamailio
    keep the default priority."""
    for pid in group_members(testbed.pgid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() != "baresip":
                continue
            for task in Path(f"/proc/{pid}/task").iterdir():  # nice is per thread on Linux
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), 10)


async def test_chaos_under_load(
    pg_server: PgServer, testbed_factory: TestbedFactory, tmp_path: Path
) -> None:
    testbed = testbed_factory([BotSpec(bot, "dtmf", "1", 1.0) for bot in BOTS])
    _phones_yield_to_the_nodes(testbed)
    url = await new_pg_database(pg_server)
    cache, secret = tmp_path / "cache", tmp_path / "store.secret"
    nodes = [
        _node(tmp_path / f"node{n}", testbed, url, cache, secret, account)
        for n, account in enumerate(ACCOUNTS)
    ]
    for node in nodes:
        node.env["VOIPALERT_ENGINE__MAX_CONCURRENT_CALLS"] = str(len(BOTS))
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
    run = Run(url, nodes)
    stop_watch = asyncio.Event()
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        await _until(lambda: _all_ready(nodes), "every node ready (registered)", 30)
        watch = asyncio.create_task(_watch_health(run, stop_watch))
        started = time.monotonic()
        await _chaos(run, started)
        stop_watch.set()
        await watch
    finally:
        stop_watch.set()
        for node in nodes:
            status = node.stop()
            assert status in (0, None, -signal.SIGKILL), node.log.read_text()[-3000:]


async def _in_flight_by_node(url: str) -> list[asyncpg.Record]:
    return await _rows(
        url, "SELECT n.pid, count(*) AS calls FROM attempts a JOIN nodes n ON n.id = a.node "
        "WHERE a.state = 'in_flight' GROUP BY n.pid ORDER BY calls DESC",
    )  # fmt: skip


async def _chaos(run: Run, started: float) -> None:
    third = ALERTS // 3
    await _intake(run, 0, third)

    async def calls_in_flight() -> bool:
        return bool(await _in_flight_by_node(run.url))

    await _until(calls_in_flight, "calls in flight", 30)
    holders = await _in_flight_by_node(run.url)
    mid_call = next(n for n in run.nodes if n.process and n.process.pid == holders[0]["pid"])
    kill_a = await _kill(run, mid_call)
    # Watched from the kill on. Polled only after the second kill (as before), the
    # mid-call figure could not be less than the time to post half the burst.
    watch_a = _watch_kill(run, kill_a)
    print(f"SIGKILL mid-call: {holders[0]['calls']} call(s) in flight, {len(kill_a[2])} alerts")

    # The burst: the rest of the alerts, and the second kill in its middle.
    burst = asyncio.create_task(_intake(run, third, ALERTS))
    await _until(_count(run, third + (ALERTS - third) // 2), "half of the burst posted", 120)
    burst_victim = run.live()[0]
    kill_b = await _kill(run, burst_victim)
    watch_b = _watch_kill(run, kill_b)
    print(f"SIGKILL mid-burst: {len(kill_b[2])} alerts held")
    took_a, called_a, took_b, called_b = await asyncio.gather(*watch_a, *watch_b)
    print(f"escalations adopted: {took_a:.1f} s (mid-call), {took_b:.1f} s (mid-burst)")
    print(
        f"first call after adoption: {called_a:.1f} s after the kill, "
        f"{max(0.0, called_a - took_a):.1f} s after adoption (mid-call); "
        f"{called_b:.1f} s, {max(0.0, called_b - took_b):.1f} s (mid-burst)"
    )
    # Adoption no longer waits for a free line (before, with every line of the one node
    # left busy, it took 18-36 s at 300 alerts): the bound holds, with the slack of the
    # other chaos test for a loaded machine. The first call is line-bound: printed only.
    assert took_a < BOUND + SLACK_SECONDS, (took_a, BOUND, SLACK_SECONDS)
    assert took_b < BOUND + SLACK_SECONDS, (took_b, BOUND, SLACK_SECONDS)
    await burst
    posted = time.monotonic() - started
    # Both restarted (new node ids), while the escalations go on.
    for victim in (mid_call, burst_victim):
        await victim.start()
        run.down.discard(run.nodes.index(victim))
    await _until(lambda: _all_ready(run.nodes), "the restarted nodes ready", 60)

    async def all_acked() -> bool:
        rows = await _rows(run.url, "SELECT count(*) FROM alerts WHERE status = 'triggered'")
        return int(rows[0][0]) == 0

    await _until(all_acked, "every alert acknowledged", 900)
    total = time.monotonic() - started
    print(
        f"{ALERTS} alerts: posted in {posted:.1f} s ({run.reposted} re-posted after a kill), "
        f"all acknowledged {total:.1f} s after the first post; "
        f"{run.health_checks} health checks"
    )
    await _check_invariants(run)


def _watch_kill(run: Run, kill: tuple[float, str, list[int]]) -> list[asyncio.Task[float]]:
    """The two figures of a kill, watched from now: adopted, first called again."""
    killed, node_id, alerts = kill
    return [
        asyncio.create_task(_resumed(run, node_id, alerts, killed)),
        asyncio.create_task(_called(run, node_id, alerts, killed)),
    ]


def _count(run: Run, n: int) -> Callable[[], Awaitable[bool]]:
    async def enough() -> bool:
        return len(run.accepted) >= n

    return enough


async def _check_invariants(run: Run) -> None:
    assert run.unanswered == [], run.unanswered
    assert len(run.accepted) == ALERTS
    rows = await _rows(
        run.url, "SELECT dedup_key, count(*) AS n, min(id) AS id, min(status) AS status "
        "FROM alerts GROUP BY dedup_key",
    )  # fmt: skip
    by_key = {r["dedup_key"]: r for r in rows}
    for key, alert_id in run.accepted.items():
        assert by_key[key]["n"] == 1, key
        assert by_key[key]["id"] == alert_id, key
    assert {r["status"] for r in rows} == {"acknowledged"}
    via = await _rows(run.url, "SELECT DISTINCT acked_via FROM alerts")
    assert [r["acked_via"] for r in via] == ["call"]  # every one by a bot's key press
    dialled_twice = await _rows(
        run.url, "SELECT attempt_id, count(*) FROM audit_log WHERE action = 'attempt.dialling' "
        "GROUP BY attempt_id HAVING count(*) > 1",
    )  # fmt: skip
    assert dialled_twice == []
    keys = await _rows(
        run.url, "SELECT alert_id, esc_repeat, esc_step, person_name, attempt_no, count(*) "
        "FROM attempts GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1",
    )  # fmt: skip
    assert keys == []
    interrupted = await _rows(run.url, "SELECT count(*) FROM attempts WHERE state = 'interrupted'")
    attempts = await _rows(run.url, "SELECT count(*) FROM attempts")
    print(f"attempts: {attempts[0][0]}, interrupted by a kill: {interrupted[0][0]}")
