"""The phone: one SIP user agent and the RTP sessions of its calls (docs/architecture.md §1).

``Phone.call(target, prompts, ring_timeout=..., stop=...)`` places one call and runs the call
script on it (``voipalert.callscript``): it returns a ``CallReport`` for every way a call can
end — acknowledged, answered without a key, busy, no answer, stopped because the alert was
handled elsewhere or the service is stopping — and never raises for those.

How a call is built, and why (docs/call-lifecycle.md has the whole story):

* **One inbox, one reader.** Everything that can happen to a call — a SIP event, a key from
  the RTP session, the end of a prompt, the script's timer, a stop request — is put into the
  call's own queue; one loop reads it and feeds the sans-IO ``CallScript``. No two waits race.
* **One TaskGroup per call** owns its helper task (the digit pump). It ends with the call.
* **One owner per resource.** ``_CallMedia`` holds the call's RTP ports from before the
  INVITE (the port is in the SDP offer) and its ``RtpSession`` after the answer, and releases
  them in one place, in order: the session's transports first (which removes the sockets
  from the event loop), the ports after. Closing a raw socket the loop still watches lets
  the kernel hand its descriptor number to the next accepted HTTP connection, which the loop
  then never reads.
* **Stopping is a request, not a cancellation.** ``StopRequest.request(reason)`` is
  idempotent and safe from any task: an ack, a resolve and a shutdown may all arrive at once.
  A hard cancellation of the task still releases everything: the release runs to completion
  even if the task is cancelled again meanwhile, and the CancelledError is re-raised after.
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
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from voipalert.callscript import (
    Action,
    CallScript,
    HangUp,
    Play,
    ScriptConfig,
    ScriptResult,
    StopReason,
    StopRequest,
)
from voipalert.codec import Codec
from voipalert.domain.alert import AttemptOutcome
from voipalert.media.beep import Beep
from voipalert.media.dtmf import Digit, DtmfSource
from voipalert.media.playout import PlayEnd
from voipalert.media.quality import CallQuality
from voipalert.net.errors import RtpSessionClosedError
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.net.rx_pool import AnalysisPool
from voipalert.net.sip_dns import DnsConfig, SipResolver
from voipalert.net.sip_transport import SipEndpoint
from voipalert.sip.agent import UserAgent
from voipalert.sip.call_rate import CallRate
from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import (
    CallAnswered,
    CallEnded,
    CallId,
    CallMediaChanged,
    CallOutcome,
    CallRinging,
    DigitReceived,
    IncomingCall,
    RegistrationChanged,
    RegistrationState,
    RegistrationStatus,
    SipEvent,
    TextDone,
    TextReceived,
)
from voipalert.sip.sdes import KEY_SALT_BYTES, SdesOffer, SrtpKeys, SrtpPolicy, negotiate
from voipalert.sip.sdp import MediaParams, new_local_media
from voipalert.sip.uri import SipUri

log = logging.getLogger("voipalert.calls")

PromptSource = Callable[[str], Awaitable[NDArray[np.int16]]]
"""Gives the 8 kHz PCM of a script prompt ("greeting", "message", "goodbye"...)."""
ProgressHook = Callable[[str], None]

HANG_UP_GRACE_SECONDS: Final = 4.0
"""After our BYE or CANCEL, how long the signalling may take to finish."""
RELEASE_TIMEOUT_SECONDS: Final = HANG_UP_GRACE_SECONDS + 2.0
FINISHED_CALLS_REMEMBERED: Final = 1024
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
T = TypeVar("T")


async def run_to_completion(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when the caller is cancelled meanwhile, once or many
    times; then re-raise the cancellation. Only for bounded clean-up (its own timeouts make
    sure it ends): a second cancellation must not leave a socket open or a call half-up."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise  # the work itself was cancelled: nothing left to wait for
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
    return result


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
    echo_canceller: bool = True
    srtp: SrtpPolicy = SrtpPolicy.OFF
    """SDES-SRTP (docs/security.md §SRTP); the settings allow it only over SIP/TLS."""


@dataclass(frozen=True, slots=True)
class CallReport:
    outcome: AttemptOutcome
    sip_status: int | None
    sip_reason: str
    digit: str | None = None
    digit_source: str | None = None
    ring_seconds: float | None = None
    """Dial to answer; dial to the end for a call never answered."""
    talk_seconds: float | None = None
    """Answer to the end of our media (None: never answered)."""
    reason_header: str | None = None
    repetitions: int = 0
    duration_seconds: float = 0.0
    """Dial to the end of the call: our last RTP packet, or the final SIP answer."""
    stopped: StopReason | None = None
    """Set when the call was asked to stop (handled elsewhere, shutdown) before its end."""
    hung_up_by: str | None = None
    progress: str | None = None
    """The call progress before the final answer, e.g. ``183 Session Progress (early
    media only, no ringing)``: an announcement is recorded here, never taken for an answer."""
    early_media: bool = False
    q850_cause: int | None = None
    classified_by: str | None = None
    """What decided the SIP outcome: ``status``, ``cause`` (Q.850), ``ring timeout``,
    ``setup timeout``, ``no response`` or ``local`` (docs/sip.md §4.5.1)."""
    voicemail: bool = False
    """A mailbox answered and beeped, and the alert was said once for its recording."""
    quality: CallQuality | None = None
    """Both directions' loss and jitter, the round trip and an estimated MOS (RTCP), for
    an answered call."""
    dial_delay_seconds: float = 0.0
    """From the call being asked for to its INVITE (waiting for a turn under ``[sip]
    max_calls_per_second``, binding the ports; with trunk failover, the trunks tried
    before): the durations above count from the INVITE, the caller's clock from the ask."""
    trunk: str | None = None
    """The trunk that carried the call (``voipalert.trunks``); None: a single phone, or
    every trunk failed."""
    failed_trunks: tuple[str, ...] = ()
    """``name: why`` of each trunk that failed this attempt before (docs/sip-failover.md)."""
    analysis_outages: int = 0
    """Times the worker process analysing the call's audio died during the call: in-band
    keys and beeps went unheard until it was restarted (docs/rx-workers.md)."""
    retry_after: int | None = None
    """``Retry-After`` of the final failure (a 503's), for the trunk's cool-down."""

    @property
    def answered(self) -> bool:
        return self.talk_seconds is not None


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
        dns: DnsConfig | None = None,
    ) -> None:
        self.agent = UserAgent(ua, rng=rng or secrets.SystemRandom())
        # New calls start at most this often (0: no limit): a trunk's CPS limit, and no
        # burst of INVITEs stalls the calls already speaking (docs/sip.md §4.14).
        self.call_rate = CallRate(ua.max_calls_per_second)
        # Where the calls' received audio is analysed: worker processes (the composition
        # root sets the pool before the first call), or None: on the loop.
        self.analysis: AnalysisPool | None = None
        # One pacer for every call of this phone (one timer for all their audio); made in
        # the phone's loop at its first call unless the composition root gives one.
        self._pacer = pacer
        resolver = SipResolver(dns, ipv6=":" in bind[0])
        self.endpoint = SipEndpoint(self.agent, bind, self._on_event, tls=tls, resolver=resolver)
        self.media = media
        self.script = script or ScriptConfig()
        self._ports = RtpPortAllocator(media.bind_host, media.port_min, media.port_max)
        self._calls: dict[CallId, _Call | IncomingSession] = {}
        # Calls whose task has returned: a late event for one (a retransmitted 2xx's
        # re-ACK, the 200 to our BYE) is dropped, not queued for nobody.
        self._finished: deque[CallId] = deque(maxlen=FINISHED_CALLS_REMEMBERED)
        self._registration_changed = asyncio.Event()
        # Where SIP MESSAGE events go (notify/message.py); None: texts are not used.
        self.on_text_event: Callable[[TextDone | TextReceived], None] | None = None
        # Who takes calls made to us (notify/callin.py); None: they are refused 486.
        self.on_incoming: Callable[[IncomingSession], None] | None = None

    @property
    def registration(self) -> RegistrationStatus | None:
        return self.agent.registration

    @property
    def active_calls(self) -> int:
        return self.agent.active_calls

    @property
    def rtp_ports_in_use(self) -> int:
        return self._ports.in_use

    def release_ports(self, ports: RtpPorts) -> None:
        """A call's media is closed: its RTP/RTCP ports go back to the allocator."""
        self._ports.release(ports)

    async def _allocate_ports(self) -> RtpPorts:
        """A bound RTP/RTCP pair, bound in a worker thread: socket() and bind() are system
        calls a loaded VM has held for over 100 ms, and the loop carries every other call's
        audio meanwhile (docs/realtime.md §6). A caller cancelled while the thread binds
        gives the pair back when it arrives, so no port or socket is lost."""
        loop = asyncio.get_running_loop()
        binding = loop.run_in_executor(None, self._ports.allocate)
        try:
            return await asyncio.shield(binding)
        except asyncio.CancelledError:
            binding.add_done_callback(self._release_unclaimed)
            raise

    def _release_unclaimed(self, binding: asyncio.Future[RtpPorts]) -> None:
        if not binding.cancelled() and binding.exception() is None:
            self.release_ports(binding.result())

    def pacer(self) -> RtpPacer:
        """The pacer every call of this phone sends its audio with."""
        if self._pacer is None:
            self._pacer = RtpPacer(asyncio.get_running_loop())
        return self._pacer

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
                level, "registration %s%s", status.state.value, _last_answer(status),
                extra={"registration_state": status.state.value, "sip_status": status.last_status},
            )  # fmt: skip
            self._registration_changed.set()
            return
        if isinstance(event, TextDone | TextReceived):
            if self.on_text_event is not None:
                self.on_text_event(event)
            return
        if isinstance(event, IncomingCall):
            self._incoming(event)
            return
        call = self._calls.get(event.call_id)
        if call is not None:
            call.post(event)
        # else: a late event of a finished call (the 200 to our BYE...), or of a call id
        # never ours: nothing waits for it.

    def _dial(self, call: _Call, target: SipUri, ring_timeout: float) -> CallId:
        media = self.media
        if media.srtp is not SrtpPolicy.OFF:
            # Fresh keys per call (RFC 4568 §6.1 wants them random and unique).
            call.sdes = SdesOffer(
                secrets.token_bytes(KEY_SALT_BYTES), mandatory=media.srtp is SrtpPolicy.REQUIRED
            )
        local = new_local_media(
            media.advertised_host, call.media.ports.port, rng=random.Random(),
            codecs=media.codecs, dtmf_payload_type=media.telephone_event_pt, sdes=call.sdes,
        )  # fmt: skip

        def invite(now: float) -> CallId:
            call_id = self.agent.invite(target, local, now, ring_timeout=ring_timeout)
            # Registered before the endpoint dispatches the INVITE's first events (a
            # transport failure is reported inside this very command).
            self._calls[call_id] = call
            return call_id

        return self.endpoint.act(invite)

    def _incoming(self, event: IncomingCall) -> None:
        if self.on_incoming is None:
            self.endpoint.act(lambda now: self.agent.reject_call(event.call_id, 486, now))
            return
        # Registered before anything else can arrive for it (a CANCEL, the caller's BYE).
        session = IncomingSession(self, event)
        self._calls[event.call_id] = session
        self.on_incoming(session)

    def _hang_up(self, call_id: CallId) -> None:
        self.endpoint.act(lambda now: self.agent.hang_up(call_id, now))

    def _forget(self, call_id: CallId) -> None:
        self._calls.pop(call_id, None)
        self._finished.append(call_id)

    async def call(
        self,
        target: SipUri,
        prompts: PromptSource,
        *,
        ring_timeout: float,
        script: ScriptConfig | None = None,
        progress: ProgressHook | None = None,
        stop: StopRequest | None = None,
    ) -> CallReport:
        stop = stop or StopRequest()
        progress = progress or (lambda _: None)
        asked = asyncio.get_running_loop().time()
        # The turn is taken first, so calls start in the order they were asked for; the
        # ports are bound meanwhile, so nothing but the SIP work is left at the turn.
        turn = self.call_rate.reserve(asked)
        ports = await self._allocate_ports()
        try:
            dial = await self._wait_for_turn(turn, stop, progress)
        except BaseException:
            self.release_ports(ports)
            raise
        if not dial:
            self.release_ports(ports)
            return _not_dialled(stop, asyncio.get_running_loop().time() - asked)
        call = _Call(
            self, _CallMedia(self, ports), prompts, progress, script or self.script, stop
        )  # fmt: skip
        report = await call.run(target, ring_timeout)
        return replace(report, dial_delay_seconds=call.time.started - asked)

    async def _wait_for_turn(self, turn: float, stop: StopRequest, progress: ProgressHook) -> bool:
        """Wait until ``turn`` (``call_rate``); False when the call was asked to stop before
        dialling (nothing was sent, so there is nothing to cancel)."""
        loop = asyncio.get_running_loop()
        if turn > loop.time() and stop.reason is None:
            progress(f"waiting {turn - loop.time():.2f} s for a turn to dial "
                     f"({self.call_rate.per_second:g} calls a second)")  # fmt: skip
            woken: asyncio.Future[None] = loop.create_future()

            def wake(*_: object) -> None:
                if not woken.done():
                    woken.set_result(None)

            timer = loop.call_at(turn, wake)
            stop.subscribe(wake)
            try:
                await woken
            finally:
                timer.cancel()
        return stop.reason is None


def _not_dialled(stop: StopRequest, waited: float) -> CallReport:
    """The report of a call stopped while it waited for its turn to dial."""
    return CallReport(
        AttemptOutcome.CANCELLED, None, "stopped before dialling", ring_seconds=0.0,
        stopped=stop.reason, classified_by="local", dial_delay_seconds=waited,
    )  # fmt: skip


def _last_answer(status: RegistrationStatus) -> str:
    """`` (401 Unauthorized)``, `` (timeout)`` or nothing: never "(None )"."""
    parts = [str(status.last_status)] if status.last_status is not None else []
    if status.last_reason:
        parts.append(status.last_reason)
    return f" ({' '.join(parts)})" if parts else ""


# ------------------------------------------------------------------ a call made to us


class IncomingSession:
    """A call someone made to us (call-in, docs/call-in.md), from the ``IncomingCall`` to
    its release. Its owner ``answer()``s it (or ``reject()``s it), reads ``next_input()``
    (keys from every DTMF path, and the ``CallEnded`` when the caller hangs up), ``play()``s
    prompts, ``hang_up()``s and at the end ``close()``s it, which releases everything once."""

    def __init__(self, phone: Phone, event: IncomingCall) -> None:
        self.phone = phone
        self.event = event
        self.call_id = event.call_id
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        """SIP events and keys of the call, and whatever its owner posts (its timers)."""
        self.media: _CallMedia | None = None
        self.ended: CallEnded | None = None
        self._answered = False
        """answer() or reject() was called: nothing more to answer."""
        self._up = False
        """The 200 went out: the call exists in the agent until a BYE ends it."""
        self._hung_up = False
        self._pump: asyncio.Task[None] | None = None

    def post(self, item: object) -> None:
        if isinstance(item, CallEnded) and self.ended is None:
            self.ended = item
        self.inbox.put_nowait(item)

    def reject(self, status: int) -> None:
        if not self._answered:
            self._answered = True  # nothing more to answer
            self.phone.endpoint.act(
                lambda now: self.phone.agent.reject_call(self.call_id, status, now)
            )

    async def answer(self) -> bool:
        """200 with our SDP answer and an open RTP session; False when the caller is gone
        (cancelled meanwhile) or the offer could not be answered (refused 488)."""
        phone = self.phone
        if self._answered or self.ended is not None:
            return False
        self._answered = True
        ports = await phone._allocate_ports()
        self.media = _CallMedia(phone, ports)
        config = phone.media
        local = new_local_media(
            config.advertised_host, ports.port, rng=random.Random(), codecs=config.codecs,
            dtmf_payload_type=config.telephone_event_pt,
        )  # fmt: skip
        remote = phone.endpoint.act(lambda now: phone.agent.answer_call(self.call_id, local, now))
        if remote is None:
            return False
        self._up = True
        session = await self.media.open(
            RtpSessionConfig(
                local_port=ports.port, remote_addr=(remote.address, remote.port),
                codec=remote.codec,
                payload_type=remote.payload_type, telephone_event_pt=remote.telephone_event_pt,
                ptime_ms=remote.ptime_ms or 20, local_host=config.bind_host,
                latching=config.latching,
                latch_hosts=phone.agent.config.trusted_hosts or frozenset(),
                inband_dtmf=config.inband_dtmf, echo_canceller=config.echo_canceller,
            )
        )  # fmt: skip
        self._pump = asyncio.create_task(self._pump_digits(session), name="call-in digits")
        return True

    async def _pump_digits(self, session: RtpSession) -> None:
        with contextlib.suppress(RtpSessionClosedError):
            while True:
                self.post(await session.next_digit())

    async def next_input(self) -> object:
        item = await self.inbox.get()
        if isinstance(item, DigitReceived):
            session = None if self.media is None else self.media.session
            if session is not None:
                session.digit_received(item.digit, DtmfSource.SIP_INFO)
        return item

    def play(self, pcm: NDArray[np.int16]) -> asyncio.Future[PlayEnd] | None:
        session = None if self.media is None else self.media.session
        if session is None or session.closed:
            return None
        return session.play(pcm)

    def hang_up(self) -> None:
        if self._hung_up or self.ended is not None:
            return
        self._hung_up = True
        if self.media is not None:
            self.media.stop_sending(asyncio.get_running_loop().time())
        self.phone._hang_up(self.call_id)

    async def close(self) -> None:
        """Hang up if still up, wait a bounded grace for the end, release media and ports."""
        try:
            if not self._answered:
                self.reject(486)
            elif self._up and self.ended is None:
                self.hang_up()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HANG_UP_GRACE_SECONDS):
                        while self.ended is None:
                            await self.inbox.get()
        finally:
            if self._pump is not None:
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump
            if self.media is not None:
                await run_to_completion(self.media.close(asyncio.get_running_loop().time()))
            self.phone._forget(self.call_id)


# ------------------------------------------------------------------ one call's resources


class _CallMedia:
    """The RTP ports of one call (bound before the offer) and its session (after the
    answer). ``close`` is the only place either is released."""

    def __init__(self, phone: Phone, ports: RtpPorts) -> None:
        self._phone = phone
        self.ports = ports
        self.session: RtpSession | None = None
        self.closed_at: float | None = None
        self.quality: CallQuality | None = None
        self.analysis_outages = 0
        """Times the worker analysing this call's audio died under it (docs/rx-workers.md)."""
        self._released = False

    async def open(
        self,
        config: RtpSessionConfig,
        on_beep: Callable[[Beep], None] | None = None,
        progress: ProgressHook | None = None,
    ) -> RtpSession:
        if self._released:
            raise RtpSessionClosedError("the call's media was released")

        def lost() -> None:
            self.analysis_outages += 1
            if progress is not None:
                progress("analysis worker restarted: in-band keys and beeps unheard meanwhile")

        self.session = await RtpSession.open(
            config, ports=self.ports, pacer=self._phone.pacer(), on_beep=on_beep,
            analysis=self._phone.analysis, on_analysis_lost=lost,
        )  # fmt: skip
        return self.session

    def stop_sending(self, now: float) -> None:
        """Our audio ends now (the call is over for the callee): the pacer lets go of it
        at once, before the signalling has finished."""
        if self.closed_at is None:
            self.closed_at = now
        if self.session is not None:
            self.session.halt()

    async def close(self, now: float) -> None:
        if self._released:
            return
        self.stop_sending(now)
        try:
            if self.session is not None:
                self.quality = self.session.quality_summary()
                # Transports first: they take the sockets out of the event loop.
                await self.session.close()
        finally:
            self._released = True
            self._phone.release_ports(self.ports)


# ------------------------------------------------------------------ one call


@dataclass(frozen=True, slots=True)
class _Tick:
    """The script's timer is due."""


@dataclass(frozen=True, slots=True)
class _PlayDone:
    future: asyncio.Future[PlayEnd]


@dataclass(frozen=True, slots=True)
class _Stop:
    reason: StopReason


@dataclass(frozen=True, slots=True)
class _Beep:
    """The far end beeped: a mailbox about to record (``media.beep``)."""

    hz: float


@dataclass(frozen=True, slots=True)
class _Prompt:
    """The audio of a ``Play`` is ready (None: it could not be made)."""

    token: int
    pcm: NDArray[np.int16] | None


_Input = SipEvent | Digit | _Tick | _PlayDone | _Stop | _Prompt | _Beep


@dataclass(slots=True)
class _Timeline:
    started: float
    answered: float | None = None
    ended: float | None = None


@dataclass(slots=True)
class _State:
    ended: CallEnded | None = None
    result: ScriptResult | None = None
    hang_up_sent: bool = False
    digit_source: str | None = None
    stopped: StopReason | None = None
    media_refused: str | None = None
    """Why we hung up an answered call whose media we could not accept (SRTP)."""
    playing: asyncio.Future[PlayEnd] | None = None
    play_token: int = 0  # the Play whose audio is awaited; an older one is dropped
    timer: asyncio.TimerHandle | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


class _Call:
    def __init__(
        self,
        phone: Phone,
        media: _CallMedia,
        prompts: PromptSource,
        progress: ProgressHook,
        script: ScriptConfig,
        stop: StopRequest,
    ) -> None:
        self.phone = phone
        self.media = media
        self.prompts = prompts
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self.script = CallScript(script)
        self.stop_request = stop
        self.call_id: CallId | None = None
        self.sdes: SdesOffer | None = None
        self.time = _Timeline(self.loop.time())
        self.state = _State()
        self._group: asyncio.TaskGroup | None = None

    def post(self, item: _Input) -> None:
        self.inbox.put_nowait(item)

    async def run(self, target: SipUri, ring_timeout: float) -> CallReport:
        try:
            self.call_id = self.phone._dial(self, target, ring_timeout)
            self.progress(f"calling {target}")
            self.stop_request.subscribe(lambda reason: self.post(_Stop(reason)))
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self._until_ended(group)
                self._stop_pumps()
        finally:
            await run_to_completion(self._release())
        return self._report()

    async def _until_ended(self, group: asyncio.TaskGroup) -> None:
        state = self.state
        # Until the call ends, or we hang up: then ``_release`` gives the signalling a
        # bounded grace to finish.
        while state.ended is None and not state.hang_up_sent:
            item = await self.inbox.get()
            now = self.loop.time()
            if isinstance(item, CallEnded):
                state.ended = item
                self._finish(self.script.hung_up(now))
            elif isinstance(item, CallAnswered):
                await self._answered(item.media, group)
            elif isinstance(item, _Stop):
                if state.stopped is None:
                    state.stopped = item.reason
                await self._apply(self.script.stop(item.reason, now))
            else:
                await self._in_call(item, now)
            self._arm_timer()

    async def _answered(self, media: MediaParams, group: asyncio.TaskGroup) -> None:
        if self.media.session is not None:
            return  # the agent ACKs and BYEs any other fork's 2xx (RFC 3261 §13.2.2.4)
        try:
            keys = self._srtp_keys(media)
        except RemoteProtocolError as exc:
            # Their media cannot be decrypted, or would go in clear against the policy:
            # nobody would hear us, so the attempt fails at once and escalation goes on.
            self.state.media_refused = str(exc)
            log.warning("call %s: hung up at answer: %s", self.call_id, exc)
            self.progress(f"hung up: {exc}")
            self._send_hang_up()
            return
        self.time.answered = self.loop.time()
        self.progress("answered" if keys is None else "answered (SRTP)")
        listen_for_beeps = self.script.config.leave_voicemail
        session = await self.media.open(
            self._rtp_config(media, keys),
            on_beep=(lambda beep: self.post(_Beep(beep.hz))) if listen_for_beeps else None,
            progress=self.progress,
        )
        self.state.pumps.append(group.create_task(self._pump_digits(session), name="digits"))
        await self._apply(self.script.answered(self.loop.time()))

    async def _in_call(self, item: _Input, now: float) -> None:
        session = self.media.session
        if isinstance(item, CallRinging):
            self.progress("early media" if item.early_media else "ringing")
        elif isinstance(item, CallMediaChanged) and session is not None:
            session.set_remote((item.media.address, item.media.port))
        elif isinstance(item, DigitReceived) and session is not None:
            session.digit_received(item.digit, DtmfSource.SIP_INFO)
        elif isinstance(item, Digit):
            if self.state.result is None and self.state.stopped is None:
                self.state.digit_source = item.source.value
            await self._apply(self.script.digit(item.char, now))
        elif isinstance(item, _Prompt | _PlayDone):
            await self._playout(item, now)
        elif isinstance(item, _Beep | _Tick):
            await self._script_event(item, now)

    async def _script_event(self, item: _Beep | _Tick, now: float) -> None:
        if isinstance(item, _Beep):
            actions = self.script.beep(now)
            if actions:
                self.progress(f"mailbox beep ({item.hz:.0f} Hz): leaving the message")
            await self._apply(actions)
            return
        deadline = self.script.next_deadline()
        if deadline is not None and now >= deadline:
            await self._apply(self.script.handle_timer(now))

    async def _pump_digits(self, session: RtpSession) -> None:
        with contextlib.suppress(RtpSessionClosedError):
            while True:
                self.post(await session.next_digit())

    def _stop_pumps(self) -> None:
        for task in self.state.pumps:
            task.cancel()

    def _arm_timer(self) -> None:
        state = self.state
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        deadline = self.script.next_deadline()
        if deadline is not None and state.ended is None:
            state.timer = self.loop.call_at(deadline, self.post, _Tick())

    async def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Play):
                await self._play(action.prompts)
            elif isinstance(action, HangUp):
                self._send_hang_up()
            elif isinstance(action, ScriptResult):
                self._finish([action])
        session = self.media.session
        if session is not None:
            session.listen_for_beeps(self.script.listening_for_beep)

    async def _play(self, keys: Sequence[str]) -> None:
        """Get the prompts' audio in a helper task: the loop stays free meanwhile, so a
        BYE, a key or a stop is handled at once even while a phrase is being rendered."""
        if self.media.session is None or self._group is None:
            return
        self.state.play_token += 1
        token = self.state.play_token
        # What plays now goes on until the new audio is ready, but its end is no longer
        # the script's business (a key already interrupted it, or the new Play replaces it).
        self.state.playing = None
        self.state.pumps.append(
            self._group.create_task(self._fetch(token, keys), name=f"prompt {token}")
        )

    async def _fetch(self, token: int, keys: Sequence[str]) -> None:
        try:
            pcm: NDArray[np.int16] | None = await self._pcm(keys)
        except Exception:
            log.exception("call %s: prompts %s could not be made", self.call_id, keys)
            pcm = None
        self.post(_Prompt(token, pcm))

    async def _playout(self, item: _Prompt | _PlayDone, now: float) -> None:
        if isinstance(item, _PlayDone):
            if item.future is self.state.playing:
                self.state.playing = None
                await self._apply(self.script.playback_finished(now))
            return
        session = self.media.session
        if item.token != self.state.play_token or session is None or session.closed:
            return  # replaced by a newer Play, or hung up meanwhile
        if item.pcm is None:
            await self._apply(self.script.playback_finished(now))  # skip what cannot be said
            return
        playing = self.state.playing = session.play(item.pcm)
        playing.add_done_callback(lambda f: self.post(_PlayDone(f)))

    def _finish(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, ScriptResult) and self.state.result is None:
                self.state.result = action

    def _send_hang_up(self) -> None:
        """BYE once answered, CANCEL while ringing (the agent picks); our audio stops now."""
        if self.state.hang_up_sent or self.call_id is None:
            return
        self.state.hang_up_sent = True
        self.media.stop_sending(self.loop.time())
        self.phone._hang_up(self.call_id)

    async def _release(self) -> None:
        """Whatever happened (normal end, error, cancellation): the call is hung up, its
        media closed and its ports returned, once."""
        self._stop_pumps()
        if self.state.timer is not None:
            self.state.timer.cancel()
        try:
            if self.call_id is not None and self.state.ended is None:
                self._send_hang_up()
                await self._wait_ended()
        finally:
            await self.media.close(self.loop.time())
            if self.call_id is not None:
                self.phone._forget(self.call_id)
            if self.time.ended is None:
                self.time.ended = self.media.closed_at or self.loop.time()

    async def _wait_ended(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANG_UP_GRACE_SECONDS):
                while self.state.ended is None:
                    item = await self.inbox.get()
                    if isinstance(item, CallEnded):
                        self.state.ended = item
        if self.state.ended is None:
            log.warning("call %s: no final answer to our hang-up; released anyway", self.call_id)

    async def _pcm(self, keys: Sequence[str]) -> NDArray[np.int16]:
        gap = np.zeros(int(PROMPT_GAP_SECONDS * 8000), dtype=np.int16)
        parts: list[NDArray[np.int16]] = []
        for key in keys:
            parts += [await self.prompts(key), gap]
        return np.concatenate(parts) if parts else gap

    def _srtp_keys(self, media: MediaParams) -> SrtpKeys | None:
        """The answer's SRTP keys per our policy (docs/security.md §SRTP)."""
        if self.sdes is None:
            if media.transport != "RTP/AVP" or media.crypto:
                raise RemoteProtocolError("SRTP: the answer has SRTP we did not offer")
            return None
        keys = negotiate(self.sdes, media.transport, media.crypto)
        if keys is None and self.sdes.mandatory:
            raise RemoteProtocolError("SRTP required, the answer has no a=crypto")
        return keys

    def _rtp_config(self, media: MediaParams, srtp: SrtpKeys | None) -> RtpSessionConfig:
        return RtpSessionConfig(
            local_port=self.media.ports.port,
            remote_addr=(media.address, media.port),
            codec=media.codec,
            payload_type=media.payload_type,
            telephone_event_pt=media.telephone_event_pt,
            ptime_ms=media.ptime_ms or 20,
            local_host=self.phone.media.bind_host,
            latching=self.phone.media.latching,
            # A far end behind NAT may send from its public address: the PBX hosts we trust
            # may be latched to, besides other ports of the SDP host (docs/security.md).
            latch_hosts=self.phone.agent.config.trusted_hosts or frozenset(),
            inband_dtmf=self.phone.media.inband_dtmf,
            echo_canceller=self.phone.media.echo_canceller,
            srtp=srtp,
        )

    # ------------------------------------------------------------ the outcome

    def _report(self) -> CallReport:
        t, state = self.time, self.state
        end = t.ended if t.ended is not None else self.loop.time()
        if self.media.closed_at is not None:
            end = min(end, self.media.closed_at)
        answered = t.answered is not None
        ring = (t.answered if t.answered is not None else end) - t.started
        talk = None if t.answered is None else max(0.0, end - t.answered)
        ended, result = state.ended, state.result
        progress = ended.progress if ended is not None else None
        acked = result is not None and result.acknowledged
        if acked:
            outcome = AttemptOutcome.ACKNOWLEDGED
        elif state.media_refused is not None:
            outcome = AttemptOutcome.FAILED
        elif state.stopped is not None:
            outcome = AttemptOutcome.CANCELLED
        elif answered or (ended is not None and ended.answered):
            outcome = AttemptOutcome.ANSWERED_NO_ACK
        elif ended is None:
            outcome = AttemptOutcome.FAILED
        else:
            outcome = _SIP_TO_ATTEMPT.get(ended.outcome, AttemptOutcome.FAILED)
        return CallReport(
            outcome,
            200 if answered else (ended.status if ended else None),
            state.media_refused
            or (ended.reason if ended else "no final SIP answer to our hang-up"),
            digit=result.digit if acked and result else None,
            digit_source=state.digit_source if acked else None,
            ring_seconds=ring,
            talk_seconds=talk,
            reason_header=ended.reason_header if ended else None,
            repetitions=result.repetitions if result else 0,
            duration_seconds=end - t.started,
            stopped=state.stopped,
            hung_up_by=ended.hung_up_by if ended else None,
            progress=progress.describe() if progress is not None else None,
            early_media=progress is not None and progress.early_media,
            q850_cause=progress.cause if progress is not None else None,
            classified_by=ended.classified_by if ended else None,
            voicemail=result is not None and result.voicemail,
            quality=self.media.quality,
            retry_after=ended.retry_after if ended else None,
            analysis_outages=self.media.analysis_outages,
        )
