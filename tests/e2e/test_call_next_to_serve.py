"""``voipalert call`` and ``voipalert sip register`` while ``voipalert serve`` runs with the
same configuration (so the same SIP port): through the service's API with an admin token,
else from an ephemeral port with a note; never "Address already in use" and a traceback.
Real serve process, real testbed (Kamailio + baresip bots), real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from testbed import Testbed

from tests.cli.test_main import run
from tests.e2e.server import Server, rota_yaml, running_server
from tests.net.sip_harness import free_port


def cli(server: Server, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voipalert", "--log-level", "warning", *args],
        env={**server.env, **env}, cwd=server.directory, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Address already in use" not in result.stderr, result.stderr


async def test_call_through_the_running_service_with_an_admin_token(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    async with running_server(testbed, rota_yaml(testbed, "ack", "busy"), tmp_path, cache) as s:
        args = ("call", testbed.uri("ack"), "--message", "PBX change test", "--json")
        result = await asyncio.to_thread(cli, s, *args, VOIPALERT_TOKEN=s.token)
        no_traceback(result)
        report = json.loads(result.stdout)
        assert report["outcome"] == "acknowledged", report
        assert report["digit"] == "1" and report["sip_status"] == 200
        assert result.returncode == 0
        assert "test call to" in s.log.read_text()  # the service placed it

        # The same through a token file; a person who does not answer gives exit status 1.
        token_file = tmp_path / "token"
        token_file.write_text(s.token + "\n")
        more = ("call", testbed.uri("busy"), "--message", "x", "--token-file", str(token_file))
        busy = await asyncio.to_thread(cli, s, *more)
        no_traceback(busy)
        assert busy.returncode == 1
        assert "outcome: busy" in busy.stdout


async def test_the_test_call_endpoint_is_admin_only_and_validated(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    async with running_server(testbed, rota_yaml(testbed, "ack", "busy"), tmp_path, cache) as s:
        created = await asyncio.to_thread(
            s.cli, "token", "create", "reader", "--scope", "read", "--json"
        )
        reader = json.loads(created.stdout)["token"]
        url = f"{s.url}/api/v1/test-call"
        body = {"target": testbed.uri("ack"), "message": "x", "repetitions": 1}
        before = len(testbed.events("ack"))
        async with aiohttp.ClientSession() as http:
            for headers, status in (
                ({}, 401),
                ({"Authorization": f"Bearer {reader}"}, 403),
                ({"Authorization": "Bearer not-a-token"}, 401),
            ):
                async with http.post(url, json=body, headers=headers) as answer:
                    assert answer.status == status, await answer.text()
            admin = {"Authorization": f"Bearer {s.token}"}
            for bad in (
                {**body, "target": "sip:ack@127.0.0.1\r\nX-Injected: 1"},
                {**body, "ring_timeout": 100000},
                {**body, "lang": "../../etc"},
                {**body, "extra": 1},
                {"target": testbed.uri("ack")},
            ):
                async with http.post(url, json=bad, headers=admin) as answer:
                    assert answer.status == 422, (bad, await answer.text())
        # No refused request rang anybody.
        assert not [e for e in testbed.events("ack")[before:] if e.get("type") == "CALL_INCOMING"]


async def test_without_a_token_the_call_uses_an_ephemeral_port_and_says_so(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    async with running_server(testbed, rota_yaml(testbed, "ack", "busy"), tmp_path, cache) as s:
        args = ("call", testbed.uri("ack"), "--message", "PBX change test", "--json")
        result = await asyncio.to_thread(cli, s, *args)
        no_traceback(result)
        assert "is in use (is `voipalert serve` running?)" in result.stderr
        assert json.loads(result.stdout)["outcome"] == "acknowledged"
        assert result.returncode == 0

        registered = await asyncio.to_thread(cli, s, "sip", "register")
        no_traceback(registered)
        assert registered.returncode == 0, registered.stdout + registered.stderr
        assert "registered sip:voipalert@" in registered.stdout
        assert "ephemeral local port" in registered.stderr

        # The short-lived bindings were removed, the service's own was not: still ready.
        async with aiohttp.ClientSession() as http, http.get(f"{s.url}/readyz") as answer:
            assert answer.status == 200, await answer.text()
        ready = await asyncio.to_thread(cli, s, "ready")
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert '"ready":true' in ready.stdout.replace(" ", "")


def test_ready_without_a_service_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {"VOIPALERT_HTTP__PORT": str(free_port(socket.SOCK_STREAM))}
    result = run("ready", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no answer at http://127.0.0.1:" in result.stderr
