"""A bounded load run over loopback: every 202 is an alert in the file, none lost, none
duplicated. (The 5,000-alert run with figures is benchmarks/bench_ingest.py.)"""

from __future__ import annotations

import asyncio
import sqlite3

from tests.ingest.conftest import Api

N = 300
CONCURRENCY = 16


async def _post(api: Api, keys: list[str]) -> dict[str, tuple[int, bool]]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)
    results: dict[str, tuple[int, bool]] = {}

    async def worker() -> None:
        while not queue.empty():
            key = queue.get_nowait()
            status, body, _ = await api.call(
                "POST",
                "/api/v1/alerts",
                token="trigger",
                json={"summary": f"load {key}", "dedup_key": key, "severity": "info"},
            )
            assert status == 202, body
            results[key] = (body["id"], body["created"])

    async with asyncio.TaskGroup() as group:
        for _ in range(CONCURRENCY):
            group.create_task(worker())
    return results


async def test_every_accepted_alert_is_stored_once(api: Api) -> None:
    keys = [f"load-{i:05d}" for i in range(N)]
    first = await _post(api, keys)
    replayed = await _post(api, keys[::5])
    conn = sqlite3.connect(f"file:{api.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, dedup_key, occurrences FROM alerts").fetchall()
    finally:
        conn.close()
    stored = {key: (alert_id, occurrences) for alert_id, key, occurrences in rows}
    assert len(rows) == len(stored) == N  # none duplicated, none lost
    assert all(created for _, created in first.values())
    assert {key: alert_id for key, (alert_id, _) in first.items()} == {
        key: alert_id for key, (alert_id, _) in stored.items()
    }
    assert all(
        not created and first[key][0] == alert_id for key, (alert_id, created) in replayed.items()
    )
    assert sorted(k for k, (_, occ) in stored.items() if occ == 2) == sorted(replayed)
