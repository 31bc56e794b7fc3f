"""Several SIP trunks in order of preference, and failover between them within one call
attempt (docs/sip-failover.md).

Each trunk is a ``Phone`` of its own: its own SIP socket, user agent and registration, so a
registrar that stops answering on one trunk changes nothing on the others. ``Trunks.call``
has the signature of ``Phone.call``: it places the call on the first trunk of
``TrunkBoard.order`` and, when the call failed in a way that shows no phone was reached
(``sip.failover.may_fail_over``), places it again on the next one, with the same prompts and
the same stop request: for the engine it is still the one attempt under the one attempt key.
Each trunk is tried at most once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from voipalert.calls import CallReport, Phone, ProgressHook, PromptSource
from voipalert.callscript import ScriptConfig, StopRequest
from voipalert.sip.events import RegistrationState
from voipalert.sip.failover import TrunkBoard, TrunkState, may_fail_over
from voipalert.sip.uri import SipUri

log = logging.getLogger("voipalert.trunks")
MAX_ERROR_CHARS: Final = 120


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    phone: Phone
    register: bool = True
    """Whether this node registers on the trunk (it has a registrar and ``register``)."""

    @property
    def home(self) -> tuple[str, int | None]:
        """Where a target "at our domain" lives on this trunk: the domain, with the
        registrar's port when the domain is the registrar's host."""
        config = self.phone.agent.config
        registrar = config.registrar
        if registrar is not None and registrar.host.lower() == config.domain.lower():
            return registrar.host, registrar.port
        return config.domain, None


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    name: str
    state: TrunkState
    since: float | None
    """Loop time of the last change we know of (registration answer, failed call)."""
    last_error: str
    failovers: int
    """Calls that failed on this trunk and went on to the next one."""


def readdress(target: SipUri, first: Trunk, trunk: Trunk) -> SipUri:
    """A target at the first trunk's domain (an extension or a number built by
    ``notify.voice.target_uri``) is the same user at ``trunk``'s domain; any other target is
    left as written and reaches its host through the trunk's outbound proxy, if any."""
    if trunk is first:
        return target
    host, port = first.home
    if target.host.lower() != host.lower() or target.port not in (None, port):
        return target
    new_host, new_port = trunk.home
    return replace(target, host=new_host, port=new_port)


def _describe(report: CallReport) -> str:
    """``503 Service Unavailable``; the reason phrase is the trunk's own text, so it is cut
    short before it goes into /readyz, the logs and the attempt's detail."""
    status = f"{report.sip_status} " if report.sip_status is not None else ""
    text = f"{status}{report.sip_reason}".strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class Trunks:
    """The trunks of this node, first = most preferred. The composition root starts and
    stops their phones (``app.trunks``)."""

    def __init__(self, trunks: Sequence[Trunk], cooldown_seconds: float = 60.0) -> None:
        if not trunks:
            raise ValueError("at least one trunk")
        self.trunks = tuple(trunks)
        self._by_name = {t.name: t for t in self.trunks}
        self.board = TrunkBoard([t.name for t in self.trunks], cooldown_seconds)
        self._failovers = dict.fromkeys(self._by_name, 0)

    @property
    def first(self) -> Trunk:
        return self.trunks[0]

    @property
    def script(self) -> ScriptConfig:
        return self.first.phone.script

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
        """``Phone.call`` on the best trunk, then on the next ones while the failure allows
        it (module header). The report names the trunk that carried the call and the ones
        that failed before it."""
        stop = stop or StopRequest()
        say = progress or (lambda _: None)
        loop = asyncio.get_running_loop()
        # A trunk whose registrar refuses us goes after the others too (a stable sort keeps
        # the board's order otherwise); it is still tried: the proxy may carry calls anyway.
        order = sorted(self.board.order(loop.time()), key=self._registration_failing)
        failed: list[str] = []
        report: CallReport | None = None
        asked = loop.time()
        for index, name in enumerate(order):
            trunk = self._by_name[name]
            if len(self.trunks) > 1:
                say(f"via trunk {name}")
            tried = loop.time()  # the trunks before this one count as a delay of its dial
            report = await trunk.phone.call(
                readdress(target, self.first, trunk), prompts, ring_timeout=ring_timeout,
                script=script, progress=progress, stop=stop,
            )  # fmt: skip
            report = replace(report, dial_delay_seconds=tried - asked + report.dial_delay_seconds)
            if not self._trunk_failed(report):
                if report.stopped is None:
                    self.board.call_carried(name)
                carrier = name if len(self.trunks) > 1 else None
                return replace(report, trunk=carrier, failed_trunks=tuple(failed))
            error = _describe(report)
            self.board.call_failed(name, error, loop.time(), report.retry_after)
            failed.append(f"{name}: {error}")
            if index + 1 < len(order) and stop.reason is None:
                self._failovers[name] += 1
                log.warning("trunk %s failed the call (%s): trying the next trunk", name, error)
                say(f"trunk {name} failed ({error}); trying the next trunk")
            else:
                break
        assert report is not None  # at least one trunk, so at least one call
        return replace(report, trunk=None, failed_trunks=tuple(failed))

    def _registration_failing(self, name: str) -> bool:
        status = self._by_name[name].phone.registration
        return status is not None and status.state is RegistrationState.FAILING

    @staticmethod
    def _trunk_failed(report: CallReport) -> bool:
        return may_fail_over(
            status=report.sip_status,
            classified_by=report.classified_by,
            progressed=report.progress is not None,
            answered=report.answered,
            stopped=report.stopped is not None,
        )

    def statuses(self, now: float) -> list[TrunkStatus]:
        """Each trunk's state for ``/readyz`` and ``/metrics``: failing while a call failure
        cools down or the registrar refuses us; registered; else unknown."""
        return [self._status(trunk, now) for trunk in self.trunks]

    def _status(self, trunk: Trunk, now: float) -> TrunkStatus:
        board, name = self.board, trunk.name
        registration = trunk.phone.registration
        failed_at = board.failed_at(name)
        state, since, error = TrunkState.UNKNOWN, None, ""
        if registration is not None:
            since = registration.since
            if registration.state is RegistrationState.REGISTERED:
                state = TrunkState.REGISTERED
            elif registration.state is RegistrationState.FAILING:
                state = TrunkState.FAILING
                error = f"registration: {registration.last_status or ''} {registration.last_reason}"
        if board.cooling_down(name, now) and failed_at is not None:
            state, since, error = TrunkState.FAILING, failed_at, f"call: {board.last_error(name)}"
        return TrunkStatus(name, state, since, " ".join(error.split()), self._failovers[name])
