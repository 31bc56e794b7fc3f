"""``voipalert serve`` on PostgreSQL, as real processes: the database commands and the server
work on a ``[database] url``, an alert posted to the API is stored and planned and its
status webhook (queued by schema_pg/0008's trigger) reaches a receiver, signed, and, with
``[cluster] single_engine = true``, a second server on the same database refuses to start
naming the first (without it, several serves share the work: tests/e2e/test_nodes_chaos.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.ingest.status_receiver import Receiver, receiving
from tests.net.sip_harness import free_port
from tests.store.conftest import PgServer, new_pg_database
from tests.store.test_engine_lock import ROTA
from voipalert.ingest import status_format

REPO = Path(__file__).resolve().parents[2]
SECRET = "pg-outbound-signing-key"


def _env(directory: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    return env | {
        "PYTHONPATH": str(REPO),
        "VOIPALERT_DATABASE__URL": url,
        "VOIPALERT_HTTP__SECRET_FILE": str(directory / "store.secret"),
        "VOIPALERT_HTTP__PORT": str(free_port(socket.SOCK_STREAM)),
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port()),
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
        "VOIPALERT_TTS__CACHE_DIR": str(directory / "cache"),
        "VOIPALERT_ENGINE__IDLE_POLL_SECONDS": "1",
    }


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voipalert", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _spawn(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "voipalert", "serve"], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


async def _ready(url: str, process: subprocess.Popen[str]) -> None:
    async with asyncio.timeout(90):
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def test_serve_on_postgresql(pg_server: PgServer, tmp_path: Path) -> None:
    async with receiving(Receiver()) as receiver:
        await _serve_on_postgresql(pg_server, tmp_path, receiver)


async def _serve_on_postgresql(pg_server: PgServer, tmp_path: Path, receiver: Receiver) -> None:
    env = _env(tmp_path, await new_pg_database(pg_server)) | {
        "VOIPALERT_OUTBOUND__TARGETS__SIEM__URL": receiver.url,
        "VOIPALERT_OUTBOUND__TARGETS__SIEM__SECRET": SECRET,
        "VOIPALERT_OUTBOUND__POLL_SECONDS": "0.2",
        "VOIPALERT_CLUSTER__SINGLE_ENGINE": "true",
    }
    (tmp_path / "rota.yaml").write_text(ROTA)
    imported = await asyncio.to_thread(_run, env, tmp_path, "rota", "import", "rota.yaml")
    assert imported.returncode == 0, imported.stderr
    created = await asyncio.to_thread(
        _run, env, tmp_path, "token", "create", "t", "--scope", "admin", "--json"
    )
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]

    first = _spawn(env, tmp_path)
    try:
        api = f"http://127.0.0.1:{env['VOIPALERT_HTTP__PORT']}"
        await _ready(api, first)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{api}/api/v1/alerts", json={"summary": "disk full"}) as r:
                assert r.status == 202, await r.text()
                alert_id = (await r.json())["id"]
            async with asyncio.timeout(30):
                while True:  # the engine planned it: a call attempt to alice exists
                    async with http.get(f"{api}/api/v1/alerts/{alert_id}") as r:
                        body = await r.json()
                    if body.get("attempts"):
                        break
                    await asyncio.sleep(0.2)
            assert body["attempts"][0]["person"] == "alice"
        await receiver.wait_for(1, seconds=30)
        hook = receiver.got[0]
        assert (hook.json["event"], hook.json["alert"]["id"]) == ("created", alert_id)
        timestamp = int(hook.headers[status_format.TIMESTAMP_HEADER])
        signature = hook.headers[status_format.SIGNATURE_HEADER]
        assert status_format.verify(SECRET.encode(), timestamp, hook.body, signature)

        second_env = env | {"VOIPALERT_HTTP__PORT": str(free_port(socket.SOCK_STREAM))}
        refused = await asyncio.to_thread(_run, second_env, tmp_path, "serve")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith("voipalert: cannot start: another voipalert serve "), line
        assert f"voipalert pid {first.pid} on {socket.gethostname()}" in line
        assert "postgresql://" in line
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGTERM)
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out[-3000:]
