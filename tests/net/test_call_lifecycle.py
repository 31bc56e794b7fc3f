"""One call's resources against the testbed: whatever ends a call — a stop request, a
second and third one, the task cancelled outright and again while it hangs up, the callee
hanging up meanwhile — the phone hears our hang-up, the RTP ports go back to the allocator,
and this process holds exactly the descriptors it held before (docs/call-lifecycle.md).

A descriptor closed while the event loop still watches it is the failure this guards
against: the kernel reuses the number for the next socket (an accepted HTTP connection),
which the loop then never reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.net.sip_harness import free_port
from voipalert.calls import MediaConfig, Phone, run_to_completion
from voipalert.callscript import ScriptConfig, StopReason, StopRequest
from voipalert.domain.alert import AttemptOutcome
from voipalert.sip.config import UAConfig
from voipalert.sip.uri import SipUri

pytestmark = pytest.mark.testbed

TONE: NDArray[np.int16] = (3000 * np.sin(2 * np.pi * 440 * np.arange(8000 * 3) / 8000)).astype(
    np.int16
)


async def prompts(key: str) -> NDArray[np.int16]:
    """Three seconds of tone per prompt: real audio, without loading a voice."""
    await asyncio.sleep(0)
    return TONE


def fds() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/self/fd/{name}"))
    return sorted(out)


@pytest.fixture
async def phone_and_testbed(
    testbed_factory: TestbedFactory,
) -> AsyncIterator[tuple[Phone, Testbed]]:
    tb = testbed_factory([BotSpec("noanswer", "noanswer"), BotSpec("voicemail", "voicemail")])
    sip_port, rtp = free_port(), free_port(even=True)
    config = UAConfig(
        user="voipalert", domain=tb.host, local_host="127.0.0.1", local_port=sip_port,
        password=tb.users["voipalert"], registrar=SipUri(host=tb.host, port=tb.port),
    )  # fmt: skip
    phone = Phone(
        config, ("127.0.0.1", sip_port), MediaConfig("127.0.0.1", "127.0.0.1", rtp, rtp + 20),
        script=ScriptConfig(repetitions=1, pause_seconds=1.0), rng=random.Random(7),
    )  # fmt: skip
    await phone.start()
    await phone.wait_registered(10)
    try:
        yield phone, tb
    finally:
        await phone.stop()


def target(tb: Testbed, bot: str) -> SipUri:
    return SipUri(user=bot, host=tb.host, port=tb.port)


async def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check(), what


async def settled(phone: Phone, baseline: list[str]) -> None:
    await wait_for(lambda: phone.rtp_ports_in_use == 0, 10, "ports released")
    await wait_for(lambda: fds() == baseline, 10, f"descriptors back: {fds()} vs {baseline}")


@pytest.mark.parametrize("delay", [0.05, 1.0, 2.5])
async def test_stop_requests_from_everywhere_end_the_call_once(
    phone_and_testbed: tuple[Phone, Testbed], delay: float
) -> None:
    phone, tb = phone_and_testbed
    baseline = fds()
    since = len(tb.events("voicemail"))
    stop = StopRequest()
    call = asyncio.create_task(
        phone.call(target(tb, "voicemail"), prompts, ring_timeout=10, stop=stop)
    )
    assert await asyncio.to_thread(tb.wait_event, "voicemail", "CALL_ESTABLISHED", since, 10)
    await asyncio.sleep(delay)
    # An API ack, a resolve and a shutdown, all at once: the first reason stands.
    assert stop.request(StopReason.HANDLED)
    assert not stop.request(StopReason.HANDLED)
    assert not stop.request(StopReason.SHUTDOWN)
    report = await asyncio.wait_for(call, 20)
    assert report.outcome is AttemptOutcome.CANCELLED and report.stopped is StopReason.HANDLED
    assert report.sip_status == 200 and report.answered
    assert report.talk_seconds is not None and report.talk_seconds >= delay
    assert await asyncio.to_thread(tb.wait_event, "voicemail", "CALL_CLOSED", since, 10)
    await settled(phone, baseline)


async def test_stop_while_ringing_cancels(phone_and_testbed: tuple[Phone, Testbed]) -> None:
    phone, tb = phone_and_testbed
    baseline = fds()
    since = len(tb.events("noanswer"))
    stop = StopRequest()
    call = asyncio.create_task(
        phone.call(target(tb, "noanswer"), prompts, ring_timeout=30, stop=stop)
    )
    assert await asyncio.to_thread(tb.wait_event, "noanswer", "CALL_INCOMING", since, 10)
    stop.request(StopReason.HANDLED)
    report = await asyncio.wait_for(call, 10)
    assert report.outcome is AttemptOutcome.CANCELLED and not report.answered
    assert report.sip_status == 487
    assert await asyncio.to_thread(tb.wait_event, "noanswer", "CALL_CLOSED", since, 10)
    await settled(phone, baseline)


@pytest.mark.parametrize("delay", [0.0, 0.5, 2.0])
async def test_cancelling_the_task_again_and_again_still_hangs_up_and_releases(
    phone_and_testbed: tuple[Phone, Testbed], delay: float
) -> None:
    phone, tb = phone_and_testbed
    baseline = fds()
    since = len(tb.events("voicemail"))
    call = asyncio.create_task(phone.call(target(tb, "voicemail"), prompts, ring_timeout=10))
    assert await asyncio.to_thread(tb.wait_event, "voicemail", "CALL_ESTABLISHED", since, 10)
    await asyncio.sleep(delay)
    for _ in range(3):  # the first cancel starts the hang-up; the others land during it
        call.cancel()
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 10)
    assert await asyncio.to_thread(tb.wait_event, "voicemail", "CALL_CLOSED", since, 10)
    await settled(phone, baseline)


async def test_the_callee_hanging_up_during_our_stop_phrase(
    phone_and_testbed: tuple[Phone, Testbed],
) -> None:
    phone, tb = phone_and_testbed
    baseline = fds()
    since = len(tb.events("voicemail"))
    stop = StopRequest()
    call = asyncio.create_task(
        phone.call(target(tb, "voicemail"), prompts, ring_timeout=10, stop=stop)
    )
    assert await asyncio.to_thread(tb.wait_event, "voicemail", "CALL_ESTABLISHED", since, 10)
    await asyncio.sleep(1.0)
    stop.request(StopReason.HANDLED)
    await asyncio.sleep(0.2)
    await asyncio.to_thread(tb.command, "voicemail", "hangup")
    report = await asyncio.wait_for(call, 10)
    assert report.outcome is AttemptOutcome.CANCELLED
    assert report.hung_up_by == "remote"
    await settled(phone, baseline)


async def test_run_to_completion_finishes_the_work_then_reraises() -> None:
    finished: list[str] = []

    async def cleanup() -> str:
        await asyncio.sleep(0.2)
        finished.append("done")
        return "ok"

    async def owner() -> str:
        return await run_to_completion(cleanup())

    task = asyncio.create_task(owner())
    for _ in range(5):
        await asyncio.sleep(0.02)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["done"]
