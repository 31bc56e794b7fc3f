"""Reliable provisionals and session timers against SIPp (docs/sip.md §4.13): SIPp plays the
callee on loopback with the scenarios of tests/data/sipp/, our ``Phone`` calls it over a
real UDP socket. SIPp checks what we send (``check_it`` regexps, the order of messages)
and exits non-zero when the scenario is not followed: each test asserts its exit status,
then reads SIPp's message log for what the scenario cannot check (CSeq order)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tests.net.sip_harness import free_port
from tests.requires import need_program
from voipalert.calls import CallReport, MediaConfig, Phone
from voipalert.callscript import ScriptConfig
from voipalert.domain.alert import AttemptOutcome
from voipalert.sip.config import UAConfig
from voipalert.sip.uri import SipUri

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).parent.parent / "data" / "sipp"
SECOND = np.arange(8000) / 8000
TONE: NDArray[np.int16] = (3000 * np.sin(2 * np.pi * 440 * SECOND[:1600])).astype(np.int16)
SIPP_LIMIT = 30.0
"""SIPp's own -timeout, and how long we wait for it to exit after our call."""


async def prompts(key: str) -> NDArray[np.int16]:
    await asyncio.sleep(0)
    return TONE


class Sipp:
    def __init__(self, process: asyncio.subprocess.Process, log: Path, port: int) -> None:
        self.process = process
        self.log = log
        self.port = port

    async def exit_status(self) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), SIPP_LIMIT)
        except TimeoutError:
            self.process.kill()  # by its pid: the one SIPp this test started
            await self.process.wait()
            raise

    async def output(self) -> str:
        assert self.process.stdout is not None
        return (await self.process.stdout.read()).decode(errors="replace")[-4000:]

    def messages(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.asynccontextmanager
async def sipp(scenario: str, tmp_path: Path) -> AsyncIterator[Sipp]:
    program = need_program("sipp", "Debian package sip-tester")
    port, media = free_port(), free_port(even=True)
    log = tmp_path / "sipp-messages.log"
    process = await asyncio.create_subprocess_exec(
        program, "-sf", str(SCENARIOS / scenario), "-i", HOST, "-p", str(port),
        "-mp", str(media), "-m", "1", "-timeout", f"{SIPP_LIMIT:.0f}s", "-timeout_error",
        "-nostdin", "-trace_msg", "-message_file", str(log), "-trace_err",
        "-error_file", str(tmp_path / "sipp-errors.log"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        yield Sipp(process, log, port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def phone(**sip: object) -> AsyncIterator[Phone]:
    sip_port, rtp = free_port(), free_port(even=True)
    config = UAConfig(
        user="voipalert", domain=HOST, local_host=HOST, local_port=sip_port,
        **sip,  # type: ignore[arg-type]
    )  # fmt: skip
    ours = Phone(
        config, (HOST, sip_port), MediaConfig(HOST, HOST, rtp, rtp + 20),
        script=ScriptConfig(repetitions=1, pause_seconds=0.5), rng=random.Random(5),
    )  # fmt: skip
    await ours.start(register=False)
    try:
        yield ours
    finally:
        await ours.stop()


async def call_sipp(
    scenario: str, tmp_path: Path, *, script: ScriptConfig | None = None
) -> tuple[CallReport, Sipp, int]:
    async with sipp(scenario, tmp_path) as far, phone() as ours:
        if script is not None:
            ours.script = script
        target = SipUri(user="callee", host=HOST, port=far.port)
        await asyncio.sleep(0.2)  # SIPp binds its port
        report = await asyncio.wait_for(ours.call(target, prompts, ring_timeout=10), 25)
        status = await far.exit_status()
        if status != 0:
            print(await far.output())
            print(far.messages())
        return report, far, status


def cseqs(log: str, method: str) -> list[int]:
    """CSeq numbers of the requests ``method`` SIPp received, in order."""
    found = re.findall(rf"^{method} sip:.*?^CSeq:\s*(\d+) {method}", log, re.M | re.S)
    return [int(n) for n in found]


async def test_reliable_183_is_pracked_then_answered_and_hung_up(tmp_path: Path) -> None:
    report, far, status = await call_sipp("prack_183.xml", tmp_path)
    assert status == 0
    assert report.answered and report.outcome is AttemptOutcome.ANSWERED_NO_ACK
    assert report.early_media
    log = far.messages()
    (invite,), (prack,), (bye,) = cseqs(log, "INVITE"), cseqs(log, "PRACK"), cseqs(log, "BYE")
    assert invite < prack < bye  # the 2xx dialog continues above the PRACK


async def test_session_timer_refreshed_with_update_before_half_the_interval(
    tmp_path: Path,
) -> None:
    # The call lasts some 4-5 s after the answer: past the refresh due at 3 s.
    script = ScriptConfig(repetitions=1, pause_seconds=2.0)
    report, far, status = await call_sipp("session_timer_uac.xml", tmp_path, script=script)
    assert status == 0
    assert report.answered and report.outcome is AttemptOutcome.ANSWERED_NO_ACK
    log = far.messages()
    (invite,), updates, (bye,) = cseqs(log, "INVITE"), cseqs(log, "UPDATE"), cseqs(log, "BYE")
    assert updates and invite < updates[0] and updates[-1] < bye


async def test_422_is_retried_once_with_its_min_se(tmp_path: Path) -> None:
    report, far, status = await call_sipp("session_422.xml", tmp_path)
    assert status == 0
    assert report.answered and report.outcome is AttemptOutcome.ANSWERED_NO_ACK
    first, second = cseqs(far.messages(), "INVITE")
    assert second == first + 1


def origins(log: str) -> list[str]:
    """The o= lines of the INVITEs SIPp received, in order."""
    return re.findall(r"^INVITE sip:.*?^(o=[^\r\n]*)", log, re.M | re.S)


async def test_without_update_the_refresh_is_a_reinvite_of_the_same_session(
    tmp_path: Path,
) -> None:
    script = ScriptConfig(repetitions=1, pause_seconds=2.0)
    report, far, status = await call_sipp("session_timer_reinvite.xml", tmp_path, script=script)
    assert status == 0
    assert report.answered
    log = far.messages()
    invites = cseqs(log, "INVITE")
    assert len(invites) >= 2 and invites == sorted(invites)
    first, *refreshes = origins(log)
    assert refreshes and all(origin == first for origin in refreshes)  # same o= version
    assert cseqs(log, "UPDATE") == []


async def test_far_end_that_stops_refreshing_gets_our_bye(tmp_path: Path) -> None:
    script = ScriptConfig(repetitions=1, pause_seconds=8.0)
    report, far, status = await call_sipp("session_timer_uas.xml", tmp_path, script=script)
    assert status == 0
    assert report.answered and report.talk_seconds is not None
    assert report.talk_seconds < 6.0  # ended by the session timer (4 s), not the script
    assert cseqs(far.messages(), "UPDATE") == []  # SIPp would have refused one, too
