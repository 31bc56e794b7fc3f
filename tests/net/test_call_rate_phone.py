"""The call rate limit on real sockets (docs/sip.md §4.14): a ``Phone`` asked for calls in
one instant sends their INVITEs no faster than ``max_calls_per_second``; a call stopped
while it waits for its turn sends nothing at all and gives its ports back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tests.net.sip_harness import free_port
from voipalert.calls import MediaConfig, Phone
from voipalert.callscript import StopReason, StopRequest
from voipalert.domain.alert import AttemptOutcome
from voipalert.sip.config import UAConfig
from voipalert.sip.message import Request, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.uri import SipUri

HOST = "127.0.0.1"
RATE = 10.0  # calls a second: turns 100 ms apart


async def prompts(key: str) -> NDArray[np.int16]:
    await asyncio.sleep(0)
    return np.zeros(800, dtype=np.int16)


@dataclass
class BusyCallee(asyncio.DatagramProtocol):
    """Answers every INVITE 486 at once and notes when (loop time) it arrived."""

    invites: list[tuple[float, str]] = field(default_factory=list)
    sip: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        message = parse_message(data)
        if not isinstance(message, Request) or message.method != "INVITE":
            return  # the ACK to our 486
        if all(message.call_id != seen for _, seen in self.invites):  # not a retransmission
            self.invites.append((asyncio.get_running_loop().time(), message.call_id))
        assert self.sip is not None
        busy = response_to(message, 486, "Busy Here", to_tag="busy")
        self.sip.sendto(busy.serialize(), (str(addr[0]), int(str(addr[1]))))


def waiting_said() -> tuple[asyncio.Event, Callable[[str], None]]:
    """An event set when a call's progress says it waits for its turn to dial."""
    said = asyncio.Event()

    def progress(line: str) -> None:
        if "for a turn to dial" in line:
            said.set()

    return said, progress


@contextlib.asynccontextmanager
async def busy_phone(rate: float) -> AsyncIterator[tuple[Phone, BusyCallee, int]]:
    loop = asyncio.get_running_loop()
    callee = BusyCallee()
    far_port = free_port()
    transport, _ = await loop.create_datagram_endpoint(lambda: callee, local_addr=(HOST, far_port))
    callee.sip = transport
    rtp = free_port(even=True)
    config = UAConfig(
        user="voipalert", domain=HOST, local_host=HOST, local_port=free_port(),
        max_calls_per_second=rate,
    )  # fmt: skip
    phone = Phone(config, (HOST, config.local_port), MediaConfig(HOST, HOST, rtp, rtp + 40))
    await phone.start(register=False)
    try:
        yield phone, callee, far_port
    finally:
        await phone.stop()
        transport.close()


async def test_calls_asked_for_at_once_start_one_turn_apart() -> None:
    async with busy_phone(RATE) as (phone, callee, far_port):
        loop = asyncio.get_running_loop()
        asked = loop.time()
        reports = await asyncio.gather(*(
            phone.call(SipUri(user=f"p{i}", host=HOST, port=far_port), prompts, ring_timeout=5)
            for i in range(5)
        ))  # fmt: skip
        assert [r.outcome for r in reports] == [AttemptOutcome.BUSY] * 5
        assert len(callee.invites) == 5
        # Turn k is k/RATE after the calls were asked for; load can only make an INVITE
        # later than its turn, never earlier, so these lower bounds cannot flake.
        arrivals = sorted(at - asked for at, _ in callee.invites)
        for k, arrival in enumerate(arrivals):
            assert arrival >= k / RATE - 0.002, (k, arrivals)
        assert phone.rtp_ports_in_use == 0
        # Each report says how long its call waited before dialling, so the caller can
        # place the call's durations (which count from the INVITE) on its own clock. (Its
        # wait counts from its own ask, a few ms after the first call's.)
        for k, report in enumerate(reports):
            assert report.dial_delay_seconds >= k / RATE - 0.03, (k, report)


async def test_a_call_stopped_while_waiting_for_its_turn_sends_nothing() -> None:
    async with busy_phone(1.0) as (phone, callee, far_port):
        first = asyncio.create_task(
            phone.call(SipUri(user="first", host=HOST, port=far_port), prompts, ring_timeout=5)
        )
        stop = StopRequest()
        said, progress = waiting_said()
        waiting = asyncio.create_task(
            phone.call(
                SipUri(user="second", host=HOST, port=far_port), prompts, ring_timeout=5,
                stop=stop, progress=progress,
            )
        )  # fmt: skip
        async with asyncio.timeout(5):  # the second call waits for its turn, a second away
            await said.wait()
        stop.request(StopReason.HANDLED)
        async with asyncio.timeout(0.5):  # at once, not at its turn
            report = await waiting
        assert report.outcome is AttemptOutcome.CANCELLED
        assert report.stopped is StopReason.HANDLED
        assert report.sip_reason == "stopped before dialling"
        assert (await first).outcome is AttemptOutcome.BUSY
        assert len(callee.invites) == 1  # the first call's only
        assert phone.rtp_ports_in_use == 0


async def test_a_call_cancelled_while_waiting_gives_its_ports_back() -> None:
    async with busy_phone(0.5) as (phone, callee, far_port):
        await phone.call(SipUri(user="a", host=HOST, port=far_port), prompts, ring_timeout=5)
        said, progress = waiting_said()
        waiting = asyncio.create_task(
            phone.call(
                SipUri(user="b", host=HOST, port=far_port), prompts, ring_timeout=5,
                progress=progress,
            )
        )  # fmt: skip
        async with asyncio.timeout(5):
            await said.wait()
        assert phone.rtp_ports_in_use == 1  # bound while it waits for its turn
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert phone.rtp_ports_in_use == 0
        assert len(callee.invites) == 1
