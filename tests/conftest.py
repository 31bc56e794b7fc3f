"""Shared pytest fixtures.

The SIP testbed (sip-testbed/testbed.py: Kamailio + baresip phone bots on loopback) is
started once per session for the tests that ask for it. Its programs come from Debian's
packages; where they are missing the tests are skipped with the install command, except in
CI (``CI`` set), where a missing peer is a failure, never a silent skip.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from testbed import DEFAULT_BOTS, INSTALL_HINT, BotSpec, Testbed, missing_programs, start

from tests.requires import need

TestbedFactory = Callable[..., Testbed]  # (bots, port=None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that uses the testbed carries the marker, so `-m "not testbed"` works
    # without anyone having to remember to add it.
    for item in items:
        if {"testbed", "testbed_factory"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.testbed)


def _require_programs() -> None:
    missing = missing_programs()
    if not missing:
        return
    need(False, f"SIP testbed programs missing ({', '.join(missing)}); install: {INSTALL_HINT}")


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One speech cache for every test that runs serve or the CLI with the real voice.

    Entries are keyed by the text, the voice and its settings (voipalert/tts/cache.py), so
    sharing them changes no test's audio; it saves each test module the Piper synthesis of
    every fixed phrase when its first serve starts. Written atomically, so several serve
    processes may share it at once."""
    return tmp_path_factory.mktemp("speech-cache")


@pytest.fixture(scope="session")
def _session_testbed() -> Iterator[Testbed]:
    _require_programs()
    tb = start(bots=DEFAULT_BOTS, watch_pid=os.getpid())
    try:
        yield tb
    finally:
        tb.stop()


# The user our service registers as on the testbed (sip-testbed/users.txt).
SERVICE_USER = "voipalert"


@pytest.fixture
def testbed(_session_testbed: Testbed) -> Iterator[Testbed]:
    """The default testbed: Kamailio plus one bot per mode (see sip-testbed/README.md),
    shared by the session's tests. A test must leave no registration of ours behind (every
    serve and CLI un-REGISTERs as it stops): Kamailio holds two bindings per user, and a
    leftover one made a later, unrelated test fail with 503. So a test that leaves one
    fails itself, here, naming it, and the binding is removed for the tests after it."""
    yield _session_testbed
    left = _session_testbed.contacts(SERVICE_USER)
    if left:
        _session_testbed.forget(SERVICE_USER)
        pytest.fail(f"the test left {SERVICE_USER}'s registration(s) on the testbed: {left}")


@pytest.fixture
def testbed_factory() -> Iterator[TestbedFactory]:
    """Start a testbed with bots of the test's choosing; every one is stopped afterwards."""
    _require_programs()
    started: list[Testbed] = []

    def factory(bots: Sequence[BotSpec], port: int | None = None) -> Testbed:
        tb = start(bots=bots, port=port, watch_pid=os.getpid())
        started.append(tb)
        return tb

    try:
        yield factory
    finally:
        for tb in started:
            tb.stop()


@pytest.fixture(autouse=True)
def _drop_our_log_handler() -> Iterator[None]:
    """A test that runs the CLI in-process installs our root handler on pytest's captured
    stderr, which is closed after the test: remove it, or later tests log into a closed
    file ("--- Logging error ---")."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "voipalert"]:
        root.removeHandler(handler)
