"""The call-in menu: what a person who dials voipalert hears and what each key does, as a
sans-IO machine (docs/call-in.md).

1. On answer: when the caller ID names a person and no PIN is required, the menu asks the
   adapter to identify them at once (``Identify(None)``). Otherwise it asks for the PIN
   ("enter your PIN, then hash"): digits are collected until ``#``, ``max_pin_digits``
   or a pause of ``digit_timeout_seconds``; then ``Identify(pin)``.
2. ``identified(None)`` is a wrong PIN (or a caller nobody knows): "wrong PIN", asked
   again, at most ``max_pin_attempts`` in the call; then "too many attempts", goodbye, hang
   up, and the result says ``locked_out`` (the adapter writes the audit line and counts it
   against the caller and the person for the hour).
3. ``identified(person, alerts)``: the open alerts are said one by one, each followed by
   the menu: 1 acknowledges (``Acknowledge(alert)``), 2 resolves (``Resolve(alert)``, only
   when ``may_resolve``; otherwise the key is refused), 3 goes to the next. The adapter
   reports what the store did with ``done(changed)``: "acknowledged" / "resolved", or
   "already handled" when someone else was first. A key arriving while the store works is
   ignored (nothing is done twice).
4. No key: the menu is repeated ``repetitions`` times, then the next alert. After the last
   one: "no more open alerts", goodbye, hang up.
5. A hang-up at any point ends the machine; the whole call is bounded by
   ``max_call_seconds`` and the last phrase by ``max_closing_seconds``.

Inputs carry ``now``; outputs are ``Play`` (prompts, replacing whatever plays), ``HangUp``,
and requests to the adapter (``Identify``, ``Acknowledge``, ``Resolve``). An alert's own
text is the prompt key ``alert_prompt(alert_id)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

WELCOME: Final = "callin_welcome"
ENTER_PIN: Final = "callin_enter_pin"
WRONG_PIN: Final = "callin_wrong_pin"
LOCKED_OUT: Final = "callin_locked_out"
NO_OPEN_ALERTS: Final = "callin_no_open_alerts"
MENU_FULL: Final = "callin_menu"
MENU_NO_RESOLVE: Final = "callin_menu_no_resolve"
ACKNOWLEDGED: Final = "acknowledged"
RESOLVED: Final = "callin_resolved"
ALREADY_HANDLED: Final = "callin_already_handled"
NOT_ALLOWED: Final = "callin_not_allowed"
NO_MORE: Final = "callin_no_more"
GOODBYE: Final = "goodbye"
PHRASES: Final = (
    WELCOME, ENTER_PIN, WRONG_PIN, LOCKED_OUT, NO_OPEN_ALERTS, MENU_FULL, MENU_NO_RESOLVE,
    ACKNOWLEDGED, RESOLVED, ALREADY_HANDLED, NOT_ALLOWED, NO_MORE, GOODBYE,
)  # fmt: skip
"""Every fixed phrase of the menu (the adapter renders them ahead, like an outbound call)."""
ACK_KEY: Final = "1"
RESOLVE_KEY: Final = "2"
NEXT_KEY: Final = "3"
PIN_END_KEY: Final = "#"
ALERT_PREFIX: Final = "alert:"


def alert_prompt(alert_id: int) -> str:
    return f"{ALERT_PREFIX}{alert_id}"


@dataclass(frozen=True, slots=True)
class MenuConfig:
    max_pin_attempts: int = 3
    max_pin_digits: int = 8
    digit_timeout_seconds: float = 5.0
    """A PIN not ended by # is taken as entered after this pause (and an empty one after
    the prompt counts as a wrong attempt, so silence cannot hold the line)."""
    pause_seconds: float = 4.0
    repetitions: int = 2
    max_alerts: int = 20
    max_call_seconds: float = 300.0
    max_closing_seconds: float = 8.0


@dataclass(frozen=True, slots=True)
class Play:
    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HangUp:
    pass


@dataclass(frozen=True, slots=True)
class Identify:
    pin: str | None
    """None: identify by the caller ID alone."""


@dataclass(frozen=True, slots=True)
class Acknowledge:
    alert_id: int


@dataclass(frozen=True, slots=True)
class Resolve:
    alert_id: int


Action = Play | HangUp | Identify | Acknowledge | Resolve


class Phase(Enum):
    WAITING = "waiting for the answer"
    PIN = "collecting the PIN"
    IDENTIFYING = "identifying"
    PRESENTING = "presenting an alert"
    WORKING = "the store is working"
    CLOSING = "saying goodbye"
    DONE = "done"


@dataclass(slots=True)
class MenuResult:
    person: str | None = None
    acknowledged: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    already_handled: list[int] = field(default_factory=list)
    pin_failures: int = 0
    locked_out: bool = False
    hung_up_by_caller: bool = False


class CallinMenu:
    def __init__(self, config: MenuConfig, *, pin_required: bool) -> None:
        self.config = config
        self.pin_required = pin_required
        self.phase = Phase.WAITING
        self.result = MenuResult()
        self._pin = ""
        self._alerts: tuple[int, ...] = ()
        self._index = 0
        self._may_resolve = False
        self._plays_left = 0
        self._playing = False
        self._deadline: float | None = None
        self._call_deadline: float | None = None
        self._working_on: tuple[str, int] | None = None

    # ------------------------------------------------------------ inputs

    def answered(self, now: float) -> list[Action]:
        if self.phase is not Phase.WAITING:
            return []
        self._call_deadline = now + self.config.max_call_seconds
        if not self.pin_required:
            self.phase = Phase.IDENTIFYING
            return [Play((WELCOME,)), Identify(None)]
        return self._ask_pin(now, (WELCOME, ENTER_PIN))

    def identified(
        self, person: str | None, alerts: tuple[int, ...], may_resolve: bool, now: float
    ) -> list[Action]:
        if self.phase is not Phase.IDENTIFYING:
            return []
        if person is None:
            self.result.pin_failures += 1
            if self.result.pin_failures >= self.config.max_pin_attempts:
                self.result.locked_out = True
                return self._close(now, (LOCKED_OUT, GOODBYE))
            return self._ask_pin(now, (WRONG_PIN, ENTER_PIN))
        self.result.person = person
        self._alerts = alerts[: self.config.max_alerts]
        self._may_resolve = may_resolve
        self._index = 0
        if not self._alerts:
            return self._close(now, (NO_OPEN_ALERTS, GOODBYE))
        return self._present(now)

    def digit(self, key: str, now: float) -> list[Action]:
        if self.phase is Phase.PIN:
            return self._pin_digit(key, now)
        if self.phase is not Phase.PRESENTING:
            return []  # identifying, working or closing: a key changes nothing
        alert = self._alerts[self._index]
        if key == ACK_KEY:
            return self._work("ack", alert, Acknowledge(alert))
        if key == RESOLVE_KEY and self._may_resolve:
            return self._work("resolve", alert, Resolve(alert))
        if key == NEXT_KEY:
            return self._next(now)
        # Resolving not allowed for this person, or a key the menu does not use.
        refused = (NOT_ALLOWED,) if key == RESOLVE_KEY else ()
        return self._say(now, (*refused, self._menu_prompt()))

    def _pin_digit(self, key: str, now: float) -> list[Action]:
        if key == PIN_END_KEY:
            return self._pin_entered(now)
        if key.isdigit():
            self._pin += key
            self._playing = False  # a key cuts the prompt short
            self._deadline = now + self.config.digit_timeout_seconds
            if len(self._pin) >= self.config.max_pin_digits:
                return self._pin_entered(now)
        return []

    def done(self, changed: bool, now: float) -> list[Action]:
        """The store answered the last ``Acknowledge``/``Resolve``: ``changed`` False means
        someone (or something) had already handled the alert."""
        if self.phase is not Phase.WORKING or self._working_on is None:
            return []
        what, alert = self._working_on
        self._working_on = None
        if not changed:
            self.result.already_handled.append(alert)
            phrase = ALREADY_HANDLED
        elif what == "ack":
            self.result.acknowledged.append(alert)
            phrase = ACKNOWLEDGED
        else:
            self.result.resolved.append(alert)
            phrase = RESOLVED
        return self._next(now, (phrase,))

    def playback_finished(self, now: float) -> list[Action]:
        if not self._playing:
            return []
        self._playing = False
        if self.phase is Phase.CLOSING:
            self.phase = Phase.DONE
            return [HangUp()]
        if self.phase in (Phase.PIN, Phase.PRESENTING):
            pause = self.config.digit_timeout_seconds if self.phase is Phase.PIN else (
                self.config.pause_seconds
            )  # fmt: skip
            self._deadline = now + pause
        return []

    def handle_timer(self, now: float) -> list[Action]:
        if self.phase is Phase.DONE:
            return []
        if self._call_deadline is not None and now >= self._call_deadline:
            if self.phase is Phase.CLOSING:
                self.phase = Phase.DONE
                return [HangUp()]
            return self._close(now, (GOODBYE,))
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return self._pause_over(now)

    def _pause_over(self, now: float) -> list[Action]:
        if self.phase is Phase.CLOSING:
            self.phase = Phase.DONE
            return [HangUp()]
        if self.phase is Phase.PIN:
            return self._pin_entered(now)
        if self.phase is Phase.PRESENTING:
            if self._plays_left > 0:
                return self._say(now, (self._menu_prompt(),))
            return self._next(now)
        return []

    def hung_up(self, now: float) -> list[Action]:
        if self.phase is not Phase.DONE:
            self.result.hung_up_by_caller = self.phase is not Phase.CLOSING
        self.phase = Phase.DONE
        self._deadline = None
        return []

    def next_deadline(self) -> float | None:
        if self.phase is Phase.DONE:
            return None
        deadlines = [d for d in (self._deadline, self._call_deadline) if d is not None]
        return min(deadlines, default=None)

    # ------------------------------------------------------------ steps

    def _ask_pin(self, now: float, prompts: tuple[str, ...]) -> list[Action]:
        self.phase = Phase.PIN
        self._pin = ""
        self._playing = True
        # Until the prompt ends the pause is not counted; bounded by the call's own limit.
        self._deadline = None
        return [Play(prompts)]

    def _pin_entered(self, now: float) -> list[Action]:
        pin, self._pin = self._pin, ""
        self.phase = Phase.IDENTIFYING
        self._deadline = None
        self._playing = False
        if not pin:
            return self.identified(None, (), False, now)
        return [Identify(pin)]

    def _menu_prompt(self) -> str:
        return MENU_FULL if self._may_resolve else MENU_NO_RESOLVE

    def _present(self, now: float, before: tuple[str, ...] = ()) -> list[Action]:
        self.phase = Phase.PRESENTING
        self._plays_left = self.config.repetitions
        alert = self._alerts[self._index]
        return self._say(now, (*before, alert_prompt(alert), self._menu_prompt()))

    def _say(self, now: float, prompts: tuple[str, ...]) -> list[Action]:
        self._plays_left -= 1
        self._playing = True
        self._deadline = None
        return [Play(prompts)]

    def _work(self, what: str, alert: int, action: Action) -> list[Action]:
        self.phase = Phase.WORKING
        self._working_on = (what, alert)
        self._deadline = None
        self._playing = False
        return [action]

    def _next(self, now: float, before: tuple[str, ...] = ()) -> list[Action]:
        self._index += 1
        if self._index >= len(self._alerts):
            return self._close(now, (*before, NO_MORE, GOODBYE))
        return self._present(now, before)

    def _close(self, now: float, prompts: tuple[str, ...]) -> list[Action]:
        self.phase = Phase.CLOSING
        self._playing = True
        self._deadline = now + self.config.max_closing_seconds
        return [Play(prompts)]
