"""Several PostgreSQL hosts in ``[database] url``: what the URL may say, and hosts that
answer nothing at all (docs/database-failover.md, "Hosts that do not answer").

A dead machine does not refuse a connection: its packets go nowhere and a client waits for
its ``connect_timeout``. Here such a host is a real listener on 127.0.0.1 that accepts the
TCP connection and then says nothing (no PostgreSQL start-up answer ever comes), which a
client cannot tell apart from a server that hangs; the other host is the real PostgreSQL
15 of the test session.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.store.conftest import PgServer, new_pg_database
from tests.test_engine import START
from voipalert.clock import FakeClock
from voipalert.store import Scope, Store, StoreConfig
from voipalert.store.errors import DatabaseUnusable
from voipalert.store.pg import HOST_STAGGER_SECONDS, _connect_first
from voipalert.store.pg_url import (
    DEFAULT_CONNECT_TIMEOUT,
    check_url,
    connect_timeout,
    host_urls,
)


class SilentHost:
    """A TCP listener that accepts every connection and never sends a byte; it counts the
    connections still open, so a test sees an abandoned attempt closed."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self._writers.append(writer)
        try:
            while await reader.read(4096):  # the start-up message, then the client's end
                pass
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self) -> SilentHost:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


@pytest.fixture
async def silent() -> AsyncIterator[SilentHost]:
    async with SilentHost() as host:
        yield host


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there: a connection is refused


async def _until(what: str, seconds: float, check: object) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.02)


def _two_hosts(first: int, server: PgServer, database: str, query: str = "") -> str:
    name = database.rsplit("/", 1)[1]
    return f"postgresql://postgres@127.0.0.1:{first},127.0.0.1:{server.port}/{name}{query}"


# ------------------------------------------------------------------ what the URL says


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(None, DEFAULT_CONNECT_TIMEOUT), ("0", DEFAULT_CONNECT_TIMEOUT), ("1", 2.0), ("7", 7.0)],
)
def test_connect_timeout_is_read_as_libpq_does(given: str | None, seconds: float) -> None:
    query = "" if given is None else f"?connect_timeout={given}"
    assert connect_timeout(f"postgresql://u@h1,h2/x{query}") == seconds


@pytest.mark.parametrize("given", ["soon", "-1", "2.5"])
def test_a_connect_timeout_that_is_not_whole_seconds_is_refused(given: str) -> None:
    with pytest.raises(DatabaseUnusable, match="not a number of seconds") as caught:
        check_url(f"postgresql://u:pw@h1/x?connect_timeout={given}")
    assert caught.value.configuration and "pw" not in str(caught.value)


def test_connect_timeout_is_not_passed_on_to_the_server() -> None:
    # asyncpg would send a parameter it does not know to the server as a setting, and
    # PostgreSQL refuses the connection for an unknown setting.
    url = "postgresql://u@h1:1,h2:2/x?connect_timeout=3&target_session_attrs=primary"
    assert host_urls(url) == [
        ("h1:1", "postgresql://u@h1:1/x?target_session_attrs=primary"),
        ("h2:2", "postgresql://u@h2:2/x?target_session_attrs=primary"),
    ]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("target_session_attrs=prefer-standby", "may choose a read-only server"),
        ("connect_timeout=later", "not a number of seconds"),
    ],
)
def test_config_check_refuses_what_cannot_work(query: str, said: str, tmp_path: Path) -> None:
    """``voipalert config check`` says what is wrong with the URL (exit 2) before anything
    connects, and never shows the password."""
    config = tmp_path / "voipalert.toml"
    config.write_text(f'[database]\nurl = "postgresql://u:pw@h1,h2/x?{query}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "voipalert", "--config", str(config), "config", "check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert said in done.stderr and "database.url" in done.stderr, done.stderr
    assert "pw" not in done.stdout + done.stderr


# ------------------------------------------------------------------ hosts that say nothing


async def test_a_silent_first_host_costs_the_stagger_not_its_timeout(
    pg_server: PgServer, silent: SilentHost, tmp_path: Path
) -> None:
    """The first host accepts and never answers; the second is the real server. The store
    opens on the second after about HOST_STAGGER_SECONDS, not after the 10 s connect
    timeout, writes there, and the silent attempt is given up (its connection closed)."""
    url = _two_hosts(silent.port, pg_server, await new_pg_database(pg_server))
    loop = asyncio.get_running_loop()
    began = loop.time()
    store = await Store.open(url, FakeClock(START), StoreConfig(secret_file=tmp_path / "secret"))
    try:
        took = loop.time() - began
        await store.create_api_token("after", frozenset({Scope.READ}))
    finally:
        await store.close()
    assert silent.accepted >= 1, "the first host was asked first"
    # A bound on behaviour, not a timing figure: one host's whole timeout is 10 s.
    assert took < DEFAULT_CONNECT_TIMEOUT / 2, f"waited {took:.1f} s for a silent host"
    await _until("the silent attempt closed", 5, lambda: silent.open == 0)


async def test_a_quick_answer_does_not_wait_for_the_stagger(pg_server: PgServer) -> None:
    """A refusing first host (nothing listens): the next is asked at once, not after the
    stagger; the refusal is no answer to wait for."""
    url = _two_hosts(_closed_port(), pg_server, await new_pg_database(pg_server))
    conn, host = await _connect_first(url, 5000)
    try:
        assert host == f"127.0.0.1:{pg_server.port}"
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_every_host_silent_fails_after_connect_timeout_naming_each(
    silent: SilentHost,
) -> None:
    async with SilentHost() as other:
        url = (
            f"postgresql://u:pw@127.0.0.1:{silent.port},127.0.0.1:{other.port}/x?connect_timeout=2"
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DatabaseUnusable) as caught:
            await _connect_first(url, 5000)
        took = loop.time() - began
        said = str(caught.value)
        assert f"127.0.0.1:{silent.port}: TimeoutError" in said, said
        assert f"127.0.0.1:{other.port}: TimeoutError" in said, said
        assert "pw" not in said
        # Both were asked (the second after the stagger, while the first still waited).
        assert silent.accepted == 1 and other.accepted == 1
        assert took >= 2.0 - 0.1  # the timeout was waited for, then given up
        await _until("both attempts closed", 5, lambda: silent.open == 0 and other.open == 0)


async def test_a_cancelled_connect_leaves_no_connection(
    pg_server: PgServer, silent: SilentHost
) -> None:
    """Shutdown while a reconnection waits for a silent host (well within the stagger):
    the attempt is cancelled, the silent host's connection closed, none left open."""
    url = _two_hosts(silent.port, pg_server, await new_pg_database(pg_server))
    attempt = asyncio.create_task(_connect_first(url, 5000))
    await _until("the first host asked", HOST_STAGGER_SECONDS / 2, lambda: silent.accepted == 1)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    await _until("the silent attempt closed", 5, lambda: silent.open == 0)
