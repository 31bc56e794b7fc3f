"""The phone: one SIP user agent and the RTP sessions of its calls (STYLE.md §3 ``calls``).

``Phone.call(target, prompts, ring_timeout=...)`` places one call and runs the call script
on it (``voipalert.callscript``): it returns a ``CallReport`` for every way a call can end —
acknowledged, answered without a key, busy, no answer... — and never raises for those.
Cancelling the task hangs up (CANCEL while ringing, BYE once answered) before the
``CancelledError`` propagates.

Per call, one loop waits on whatever comes first: the signalling (answered, media moved,
a SIP INFO key, the callee's BYE), a key from the RTP session (RFC 4733 or in-band), the end
of the prompt being played, or the script's listening timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from voipalert.callscript import (
    GOODBYE,
    Action,
    CallScript,
    HangUp,
    Play,
    ScriptConfig,
    ScriptResult,
)
from voipalert.domain.alert import AttemptOutcome
from voipalert.media.dtmf import DtmfSource
from voipalert.media.playout import PlayEnd
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.net.sip_transport import SipEndpoint
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.events import (
    CallAnswered,
    CallEnded,
    CallId,
    CallMediaChanged,
    CallOutcome,
    CallRinging,
    DigitReceived,
    RegistrationChanged,
    RegistrationState,
    RegistrationStatus,
    SipEvent,
)
from voipalert.sip.sdp import Codec, MediaParams, new_local_media
from voipalert.sip.uri import SipUri

log = logging.getLogger("voipalert.calls")

PromptSource = Callable[[str], Awaitable[NDArray[np.int16]]]
"""Gives the 8 kHz PCM of a script prompt ("greeting", "message", "goodbye"...)."""
ProgressHook = Callable[[str], None]

HANG_UP_GRACE_SECONDS: Final = 4.0
FINISHED_CALLS_REMEMBERED: Final = 1024
HANDLED_ELSEWHERE: Final = "handled_elsewhere"
HANDLED_PHRASE_MAX_SECONDS: Final = 5.0
PROMPT_GAP_SECONDS: Final = 0.25
_SIP_TO_ATTEMPT: Final = {
    CallOutcome.NO_ANSWER: AttemptOutcome.NO_ANSWER,
    CallOutcome.BUSY: AttemptOutcome.BUSY,
    CallOutcome.DECLINED: AttemptOutcome.DECLINED,
    CallOutcome.UNREACHABLE: AttemptOutcome.UNREACHABLE,
    CallOutcome.REJECTED: AttemptOutcome.FAILED,
    CallOutcome.FAILED: AttemptOutcome.FAILED,
    CallOutcome.CANCELLED: AttemptOutcome.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class MediaConfig:
    bind_host: str
    advertised_host: str
    port_min: int
    port_max: int
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
    telephone_event_pt: int = 101
    latching: bool = True
    inband_dtmf: bool = True


@dataclass(frozen=True, slots=True)
class CallReport:
    outcome: AttemptOutcome
    sip_status: int | None
    sip_reason: str
    digit: str | None = None
    digit_source: str | None = None
    ring_seconds: float | None = None
    talk_seconds: float | None = None
    reason_header: str | None = None
    repetitions: int = 0


class Phone:
    """Create inside the running loop; ``await start()``; ``await stop()`` at the end."""

    def __init__(
        self,
        ua: UAConfig,
        bind: Address,
        media: MediaConfig,
        *,
        tls: ssl.SSLContext | None = None,
        script: ScriptConfig | None = None,
        rng: random.Random | None = None,
        pacer: RtpPacer | None = None,
    ) -> None:
        self.agent = UserAgent(ua, rng=rng or secrets.SystemRandom())
        self.pacer = pacer
        self.endpoint = SipEndpoint(self.agent, bind, self._on_event, tls=tls)
        self.media = media
        self.script = script or ScriptConfig()
        self._ports = RtpPortAllocator(media.bind_host, media.port_min, media.port_max)
        self._queues: dict[CallId, asyncio.Queue[SipEvent]] = {}
        # Calls whose task has returned: a late event for one (a retransmitted 2xx's
        # re-ACK, the 200 to our BYE) must not create a queue nobody will ever read.
        self._finished: deque[CallId] = deque(maxlen=FINISHED_CALLS_REMEMBERED)
        self._registration_changed = asyncio.Event()
        self.closing = False
        """Set at shutdown: calls cut short say goodbye rather than "handled elsewhere"."""

    @property
    def registration(self) -> RegistrationStatus | None:
        return self.agent.registration

    @property
    def active_calls(self) -> int:
        return self.agent.active_calls

    async def start(self, *, register: bool = True) -> None:
        await self.endpoint.start()
        if register:
            self.endpoint.act(self.agent.register)

    async def wait_registered(self, seconds: float) -> RegistrationStatus | None:
        """The registration state once it settles (registered or failing), or None."""
        settled = (RegistrationState.REGISTERED, RegistrationState.FAILING)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while (status := self.registration) is None or status.state not in settled:
                    self._registration_changed.clear()
                    await self._registration_changed.wait()
        return self.registration

    async def stop(self, seconds: float = 5.0) -> None:
        """Un-register (briefly waiting for the answer), then close the sockets."""
        if self.registration is not None:
            self.endpoint.act(self.agent.unregister)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    while self._unregistering():
                        self._registration_changed.clear()
                        await self._registration_changed.wait()
        await self.endpoint.close()

    def _unregistering(self) -> bool:
        status = self.registration
        return status is not None and status.state is RegistrationState.UNREGISTERING

    def _on_event(self, event: SipEvent) -> None:
        if isinstance(event, RegistrationChanged):
            status = event.status
            level = logging.WARNING if status.state is RegistrationState.FAILING else logging.INFO
            log.log(
                level, "registration %s (%s %s)", status.state.value, status.last_status,
                status.last_reason,
            )  # fmt: skip
            self._registration_changed.set()
            return
        if event.call_id in self._finished:
            return
        queue = self._queues.get(event.call_id)
        if queue is None:
            # An event can precede the call's own registration of its queue: the INVITE's
            # transport may fail inside agent.invite(), before the call id is returned.
            queue = self._queues[event.call_id] = asyncio.Queue()
        queue.put_nowait(event)

    async def call(
        self,
        target: SipUri,
        prompts: PromptSource,
        *,
        ring_timeout: float,
        script: ScriptConfig | None = None,
        progress: ProgressHook | None = None,
    ) -> CallReport:
        ports = self._ports.allocate()
        call = _Call(self, ports, prompts, progress or (lambda _: None))
        call.script_config = script or self.script
        try:
            return await call.run(target, ring_timeout)
        finally:
            self._ports.release(ports)
            if call.call_id is not None:
                self._queues.pop(call.call_id, None)
                self._finished.append(call.call_id)


class _Call:
    def __init__(
        self, phone: Phone, ports: RtpPorts, prompts: PromptSource, progress: ProgressHook
    ) -> None:
        self.phone = phone
        self.ports = ports
        self.prompts = prompts
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.call_id: CallId | None = None
        self.session: RtpSession | None = None
        self.result: ScriptResult | None = None
        self.started = self.loop.time()
        self.answered_at: float | None = None
        self.playing: asyncio.Future[PlayEnd] | None = None
        self.digit_source: str | None = None
        self.script_config = phone.script

    @property
    def events(self) -> asyncio.Queue[SipEvent]:
        assert self.call_id is not None
        return self.phone._queues.setdefault(self.call_id, asyncio.Queue())

    async def run(self, target: SipUri, ring_timeout: float) -> CallReport:
        media = self.phone.media
        local = new_local_media(
            media.advertised_host, self.ports.port, rng=random.Random(),
            codecs=media.codecs, dtmf_payload_type=media.telephone_event_pt,
        )  # fmt: skip
        agent = self.phone.agent
        self.call_id = CallId(str(self.phone.endpoint.act(
            lambda now: agent.invite(target, local, now, ring_timeout=ring_timeout)
        )))  # fmt: skip
        self.progress(f"calling {target}")
        ended: CallEnded | None = None
        try:
            ended = await self._signalling()
        finally:
            if ended is None:
                await self._hang_up_and_wait()
            if self.session is not None:
                await self.session.close()
        return self._report(ended)

    async def _signalling(self) -> CallEnded:
        while True:
            event = await self.events.get()
            if isinstance(event, CallRinging):
                self.progress("early media" if event.early_media else "ringing")
            elif isinstance(event, CallAnswered):
                self.answered_at = self.loop.time()
                self.progress("answered")
                ended = await self._talk(event.media)
                if ended is not None:
                    return ended
            elif isinstance(event, CallEnded):
                return event

    async def _hang_up_and_wait(self) -> None:
        """Cancelled (alert handled elsewhere) or failed: CANCEL while ringing; once
        answered, a short "handled by someone else" first, then BYE. Either way the
        signalling gets a few seconds to finish so the PBX does not keep a half-call."""
        if self.call_id is None:
            return
        if self.session is not None and self.result is None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(HANDLED_PHRASE_MAX_SECONDS):
                    phrase = GOODBYE if self.phone.closing else HANDLED_ELSEWHERE
                    await self.session.play(await self.prompts(phrase))
        self._send_hang_up()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANG_UP_GRACE_SECONDS):
                while not isinstance(await self.events.get(), CallEnded):
                    pass

    # ------------------------------------------------------------ the answered call

    async def _talk(self, media: MediaParams) -> CallEnded | None:
        """Run the script until it hangs up or the callee does; the CallEnded if seen."""
        session = self.session = await RtpSession.open(
            self._rtp_config(media), ports=self.ports, pacer=self.phone.pacer
        )
        script = CallScript(self.script_config)
        await self._apply(script.answered(self.loop.time()))
        digit_task = asyncio.ensure_future(session.next_digit())
        signal_task = asyncio.ensure_future(self.events.get())
        try:
            while self.result is None:
                waits: set[asyncio.Future[Any]] = {digit_task, signal_task}
                if self.playing is not None:
                    waits.add(self.playing)
                deadline = script.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
                done, _ = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
                now = self.loop.time()
                if signal_task in done:
                    event = signal_task.result()
                    if isinstance(event, CallEnded):
                        self._finish(script.hung_up(now))
                        return event
                    self._signal_in_call(event)
                    signal_task = asyncio.ensure_future(self.events.get())
                if digit_task in done:
                    digit = digit_task.result()
                    self.digit_source = digit.source.value
                    digit_task = asyncio.ensure_future(session.next_digit())
                    await self._apply(script.digit(digit.char, now))
                elif self.playing is not None and self.playing in done:
                    self.playing = None
                    await self._apply(script.playback_finished(now))
                elif not done:
                    await self._apply(script.handle_timer(now))
            return None
        finally:
            for task in (digit_task, signal_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _finish(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, ScriptResult) and self.result is None:
                self.result = action

    def _signal_in_call(self, event: SipEvent) -> None:
        assert self.session is not None
        if isinstance(event, CallMediaChanged):
            self.session.set_remote((event.media.address, event.media.port))
        elif isinstance(event, DigitReceived):
            self.session.digit_received(event.digit, DtmfSource.SIP_INFO)

    async def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Play):
                pcm = await self._pcm(action.prompts)
                assert self.session is not None
                self.playing = self.session.play(pcm)
            elif isinstance(action, HangUp):
                self._send_hang_up()
        self._finish(actions)

    def _send_hang_up(self) -> None:
        assert self.call_id is not None
        call_id = self.call_id
        self.phone.endpoint.act(lambda now: self.phone.agent.hang_up(call_id, now))

    async def _pcm(self, keys: Sequence[str]) -> NDArray[np.int16]:
        gap = np.zeros(int(PROMPT_GAP_SECONDS * 8000), dtype=np.int16)
        parts: list[NDArray[np.int16]] = []
        for key in keys:
            parts += [await self.prompts(key), gap]
        return np.concatenate(parts) if parts else gap

    def _rtp_config(self, media: MediaParams) -> RtpSessionConfig:
        return RtpSessionConfig(
            local_port=self.ports.port,
            remote_addr=(media.address, media.port),
            codec="PCMA" if media.codec is Codec.PCMA else "PCMU",
            payload_type=media.payload_type,
            telephone_event_pt=media.telephone_event_pt,
            ptime_ms=media.ptime_ms or 20,
            local_host=self.phone.media.bind_host,
            latching=self.phone.media.latching,
            inband_dtmf=self.phone.media.inband_dtmf,
        )

    # ------------------------------------------------------------ the outcome

    def _report(self, ended: CallEnded | None) -> CallReport:
        now = self.loop.time()
        ring = (self.answered_at or now) - self.started
        talk = None if self.answered_at is None else now - self.answered_at
        if ended is None:
            return CallReport(AttemptOutcome.CANCELLED, None, "cancelled", ring_seconds=ring)
        if ended.answered or ended.outcome is CallOutcome.ANSWERED:
            result = self.result
            acked = result is not None and result.acknowledged
            return CallReport(
                AttemptOutcome.ACKNOWLEDGED if acked else AttemptOutcome.ANSWERED_NO_ACK,
                ended.status, ended.reason,
                digit=result.digit if result else None,
                digit_source=self.digit_source if acked else None,
                ring_seconds=ring, talk_seconds=talk, reason_header=ended.reason_header,
                repetitions=result.repetitions if result else 0,
            )  # fmt: skip
        outcome = _SIP_TO_ATTEMPT.get(ended.outcome, AttemptOutcome.FAILED)
        return CallReport(
            outcome, ended.status, ended.reason, ring_seconds=ring,
            reason_header=ended.reason_header,
        )  # fmt: skip
