"""The self-test: is the phone path working? (docs/outbound.md §Self-test)

Two watches, both owned by ``serve``'s task group:

- **Test calls.** Every ``every_seconds`` (the first at start) the running phone calls the
  configured number, with the phone, voice and registration that alerts use, through the
  same lender as ``POST /api/v1/test-call`` (``app.test_call``: one test call at a time). It
  succeeds when the call is answered (or, with ``require_ack``, acknowledged by key).
- **Registration.** Every ``check_seconds`` the SIP registration state is read; when it has
  not been "registered" for ``registration_grace_seconds``, the registration is lost. The
  user agent re-registers by itself; this only notices and reports.

While either fails, the phone path is *degraded*: ``/readyz`` says so with the reasons,
``/metrics`` has the figures, and each listener is told whenever the set of failing parts
changes. The listener ``AlertOnFailure`` opens an alert (source ``selftest``), routed like
any other, so the status webhooks (``ingest.status_hooks``) and any other channel that
follows alerts hear of it; it is resolved when the path works again. A channel that must
be told directly (e-mail, when it lands) adds a ``PhonePathListener``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from voipalert.app.test_call import TestCaller, TestCallIn, TestCallRefused
from voipalert.calls import CallReport
from voipalert.clock import Clock
from voipalert.domain.alert import AttemptOutcome, NewAlert, Severity
from voipalert.errors import ConfigError
from voipalert.ingest.convert import Resolve
from voipalert.ingest.health import PhonePath, SipState
from voipalert.ingest.intake import Intake
from voipalert.notify.voice import target_uri

log = logging.getLogger("voipalert.selftest")
SOURCE: Final = "selftest"
DEDUP_KEY: Final = "selftest:phone-path"
REGISTRATION: Final = "registration"
TEST_CALL: Final = "test_call"


@dataclass(frozen=True, slots=True)
class SelfTestConfig:
    number: str | None = None  # None: no test calls (the registration is still watched)
    every_seconds: float = 3600.0
    ring_timeout_seconds: float = 30.0
    message: str = "This is a voipalert self test. No action is needed."
    language: str = "en"
    require_ack: bool = False
    registration_grace_seconds: float = 30.0
    check_seconds: float = 2.0
    alert: bool = True


class PhonePathListener(Protocol):
    async def phone_path_changed(self, path: PhonePath) -> None:
        """The set of failing parts changed (``path.degraded`` empty: all works again)."""


class CallSkipped(Exception):
    """The lender would not place the call now (another test call, shutdown): skip."""


PlaceTestCall = Callable[[SelfTestConfig], Awaitable[CallReport]]


def check_number(config: SelfTestConfig, domain: str) -> None:
    """Refuse, at start, a number the phone could never call (``ConfigError``)."""
    if config.number is None:
        return
    try:
        target_uri(config.number, domain)
    except ValueError as exc:
        raise ConfigError([f"selftest.number: cannot call {config.number!r}: {exc}"]) from None


def lend(caller: TestCaller) -> PlaceTestCall:
    """Test calls through the running service's lender (``app.test_call``)."""

    async def place(config: SelfTestConfig) -> CallReport:
        assert config.number is not None
        body = TestCallIn(
            target=config.number, message=config.message, lang=config.language,
            ring_timeout=config.ring_timeout_seconds, repetitions=2,
        )  # fmt: skip
        try:
            return await caller.place(body, "self-test")
        except TestCallRefused as exc:
            if exc.status in (409, 503):  # another test call, or stopping
                raise CallSkipped(str(exc)) from None
            # A target or language the lender refuses: the test fails every time.
            return CallReport(AttemptOutcome.FAILED, None, str(exc))

    return place


class SelfTest:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        config: SelfTestConfig,
        clock: Clock,
        sip_state: Callable[[], SipState],
        place: PlaceTestCall,
        listeners: Sequence[PhonePathListener] = (),
    ) -> None:
        self._config = config
        self._clock = clock
        self._sip_state = sip_state
        self._place = place
        self.listeners = list(listeners)
        self._reasons: dict[str, str] = {}
        self._watch_registration_too = sip_state() is not SipState.NOT_CONFIGURED
        monitored = self._watch_registration_too or config.number is not None
        self._path = PhonePath(monitored=monitored)

    def status(self) -> PhonePath:
        return self._path

    async def run(self) -> None:
        if not self._path.monitored:
            return
        async with asyncio.TaskGroup() as group:
            if self._watch_registration_too:
                group.create_task(self._watch_registration(), name="selftest:registration")
            if self._config.number is not None:
                group.create_task(self._test_calls(), name="selftest:calls")

    async def _watch_registration(self) -> None:
        lost_at: float | None = None
        while True:
            state = self._sip_state()
            now = self._clock.monotonic()
            if state is SipState.REGISTERED:
                lost_at = None
                await self._set(REGISTRATION, None)
            else:
                lost_at = now if lost_at is None else lost_at
                if now - lost_at >= self._config.registration_grace_seconds:
                    if REGISTRATION not in self._reasons:
                        self._path = replace(
                            self._path, registration_losses=self._path.registration_losses + 1
                        )
                    since = self._clock.now_utc().strftime("%H:%M:%S UTC")
                    reason = self._reasons.get(REGISTRATION) or (
                        f"SIP registration lost ({state.value}) since {since}"
                    )
                    await self._set(REGISTRATION, reason)
            await asyncio.sleep(self._config.check_seconds)

    async def _test_calls(self) -> None:
        while True:
            await self.test_once()
            await asyncio.sleep(self._config.every_seconds)

    async def test_once(self) -> CallReport | None:
        """One test call, recorded; None when it was not placed (skipped)."""
        try:
            report = await self._place(self._config)
        except CallSkipped as exc:
            log.info("self-test call skipped: %s", exc)
            return None
        if report.stopped is not None:
            return None  # stopped by a shutdown: says nothing about the phone path
        wanted = {AttemptOutcome.ACKNOWLEDGED}
        if not self._config.require_ack:
            wanted.add(AttemptOutcome.ANSWERED_NO_ACK)
        calls = self._path.test_calls + 1
        if report.outcome in wanted:
            self._path = replace(
                self._path, test_calls=calls, last_success_at=self._clock.now_utc()
            )
            log.info("self-test call answered (%s)", report.outcome.value)
            await self._set(TEST_CALL, None)
            return report
        self._path = replace(self._path, test_calls=calls, failures=self._path.failures + 1)
        reason = f"test call to {self._config.number} failed: {report.outcome.value}"
        if report.sip_status:
            reason = f"{reason}, SIP {report.sip_status} {report.sip_reason}".rstrip()
        elif report.sip_reason:
            reason = f"{reason} ({report.sip_reason})"  # refused before dialling: why
        log.warning("self-test: %s", reason)
        await self._set(TEST_CALL, reason)
        return report

    async def _set(self, part: str, reason: str | None) -> None:
        before = set(self._reasons)
        if reason is None:
            self._reasons.pop(part, None)
        else:
            self._reasons[part] = reason
        self._path = replace(self._path, degraded=tuple(self._reasons.values()))
        if set(self._reasons) == before:
            return
        if self._path.degraded:
            log.warning("phone path degraded: %s", "; ".join(self._path.degraded))
        else:
            log.info("phone path works again")
        for listener in self.listeners:
            try:
                await listener.phone_path_changed(self._path)
            except Exception:
                log.exception("a phone path listener failed")


class AlertOnFailure:
    """Opens one alert per outage of the phone path and resolves it when the path works
    again; the alert reaches the other channels (status webhooks...) like any other.

    One per outage, not one per change: the alert's own calls fail too (the phone path is
    down), so its policy may close it at once, and a second failing part must not open a
    second alert."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self._down = False

    async def phone_path_changed(self, path: PhonePath) -> None:
        if not path.degraded:
            if self._down:
                self._down = False
                await self._intake.submit(Resolve(DEDUP_KEY, SOURCE))
            return
        if self._down:
            return
        self._down = True
        await self._intake.submit(
            NewAlert(
                summary="voipalert phone path failing: " + "; ".join(path.degraded),
                severity=Severity.CRITICAL,
                source=SOURCE,
                dedup_key=DEDUP_KEY,
                fields={"reasons": list(path.degraded)},
            )
        )
