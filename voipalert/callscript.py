"""The call script: what a callee hears and what each key does, as a sans-IO machine.

The same script runs for every call (escalation, mass alert, ``voipalert call``):

1. On answer: the greeting, the message, then "press 1 to acknowledge, 0 to hear the
   message again".
2. A key interrupts speech at once. The ack key → "acknowledged, thank you", goodbye, hang
   up, acknowledged. The repeat key → the message again. Any other key → a short reminder.
3. No key: after a pause the message is repeated, up to ``repetitions`` times in all; then
   "no acknowledgement received", goodbye, hang up — answered without acknowledgement, so
   the escalation goes on (an answering machine never acknowledges: only a key does).
4. A mailbox answered: when the far end's audio has a beep (``beep``: a mailbox's "leave
   your message after the tone"), whatever plays stops and the alert is said once for the
   recording ("this is an alert from voipalert, left on your voicemail", the message,
   goodbye), then we hang up: answered without acknowledgement, the escalation goes on,
   and the person finds the message in their mailbox.
5. Asked to stop (``stop``: the alert was handled elsewhere, or the service is stopping):
   "handled by someone else" or "goodbye", then hang up. A key already accepted stays
   accepted: a stop that arrives while the callee hears "acknowledged" changes nothing.
   Closing is bounded: if the last phrase never finishes, ``handle_timer`` hangs up at
   ``max_closing_seconds``.

Inputs carry ``now``; outputs are ``Play`` (the prompts to speak, replacing whatever is
playing), ``HangUp`` and, once, the ``ScriptResult``. The adapter plays the prompts,
reports ``playback_finished`` and calls ``handle_timer`` at ``next_deadline()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

GREETING: Final = "greeting"
MESSAGE: Final = "message"
PRESS_TO_ACKNOWLEDGE: Final = "press_to_acknowledge"
PRESS_TO_REPEAT: Final = "press_to_repeat"
INVALID_KEY: Final = "invalid_key"
ACKNOWLEDGED: Final = "acknowledged"
NO_ACKNOWLEDGEMENT: Final = "no_acknowledgement"
GOODBYE: Final = "goodbye"
HANDLED_ELSEWHERE: Final = "handled_elsewhere"
VOICEMAIL: Final = "voicemail"
MENU: Final = (PRESS_TO_ACKNOWLEDGE, PRESS_TO_REPEAT)
# The longest message a mailbox is given time for, on top of the closing bound.
VOICEMAIL_MESSAGE_SECONDS: Final = 60.0


class StopReason(StrEnum):
    """Why a call is asked to end before its script does."""

    HANDLED = "handled_elsewhere"  # acknowledged by someone else, or resolved
    SHUTDOWN = "shutdown"  # the service is stopping


class StopRequest:
    """Asks one call to end. The first reason wins; asking again (an ack, then a resolve,
    then a shutdown, in any order and at any time) changes nothing, so every cancel path
    may simply call ``request``. Listeners run once, synchronously."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self._listeners: list[Callable[[StopReason], None]] = []

    def request(self, reason: StopReason) -> bool:
        """True when this call made the request (False: it had been made already)."""
        if self.reason is not None:
            return False
        self.reason = reason
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener(reason)
        return True

    def subscribe(self, listener: Callable[[StopReason], None]) -> None:
        """``listener(reason)`` once the stop is requested (at once if it already was)."""
        if self.reason is not None:
            listener(self.reason)
        else:
            self._listeners.append(listener)


class Phase(Enum):
    WAITING = "waiting for the answer"
    SPEAKING = "speaking"
    LISTENING = "listening for a key"
    CLOSING = "saying goodbye"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ScriptConfig:
    ack_digit: str = "1"
    repeat_digit: str = "0"
    repetitions: int = 3
    """How many times the message is said when nobody presses a key."""
    pause_seconds: float = 3.0
    """Silence after each menu, listening for a key, before the message is said again."""
    max_repeat_requests: int = 10
    """Keys that ask to repeat, at most (a stuck key must not hold the line forever)."""
    max_closing_seconds: float = 8.0
    """The last phrase ("acknowledged, goodbye", "handled elsewhere") is cut after this."""
    leave_voicemail: bool = True
    """On a mailbox's beep, say the alert once for the recording, then hang up."""


@dataclass(frozen=True, slots=True)
class Play:
    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HangUp:
    pass


@dataclass(frozen=True, slots=True)
class ScriptResult:
    acknowledged: bool
    digit: str | None
    digits_heard: tuple[str, ...]
    repetitions: int
    stopped: StopReason | None = None
    voicemail: bool = False
    """The alert was said to a mailbox after its beep."""


Action = Play | HangUp | ScriptResult


class CallScript:
    def __init__(self, config: ScriptConfig | None = None) -> None:
        self.config = config or ScriptConfig()
        self.phase = Phase.WAITING
        self._said = 0
        self._repeat_requests = 0
        self._listen_until: float | None = None
        self._digits: list[str] = []
        self._ack_digit: str | None = None
        self._close_by: float | None = None
        self._stopped: StopReason | None = None
        self._voicemail = False

    def next_deadline(self) -> float | None:
        if self.phase is Phase.LISTENING:
            return self._listen_until
        return self._close_by if self.phase is Phase.CLOSING else None

    def answered(self, now: float) -> list[Action]:
        if self.phase is not Phase.WAITING:
            return []
        self._said = 1
        self.phase = Phase.SPEAKING
        return [Play((GREETING, MESSAGE, *MENU))]

    def digit(self, key: str, now: float) -> list[Action]:
        if self.phase not in (Phase.SPEAKING, Phase.LISTENING) and not self._for_mailbox():
            return []  # before the answer (early media) or while closing: not ours to act on
        # A key while we speak to a "mailbox" proves a person is there (the beep was
        # something else): the menu works as usual, and they can acknowledge.
        self._voicemail = False
        self._digits.append(key)
        self._listen_until = None
        if key == self.config.ack_digit:
            self._ack_digit = key
            return self._close(now, ACKNOWLEDGED, GOODBYE)
        self.phase = Phase.SPEAKING
        if (
            key == self.config.repeat_digit
            and self._repeat_requests < self.config.max_repeat_requests
        ):
            self._repeat_requests += 1
            return [Play((MESSAGE, *MENU))]
        return [Play((INVALID_KEY,))]

    def beep(self, now: float) -> list[Action]:
        """The far end beeped (a mailbox starts recording): the alert once, for it."""
        if not self.listening_for_beep:
            return []
        self._voicemail = True
        self._listen_until = None
        # Closing, bounded like any last phrase but long enough for the message.
        self.phase = Phase.CLOSING
        self._close_by = now + self.config.max_closing_seconds + VOICEMAIL_MESSAGE_SECONDS
        return [Play((VOICEMAIL, MESSAGE, GOODBYE))]

    def playback_finished(self, now: float) -> list[Action]:
        if self.phase is Phase.CLOSING:
            self.phase = Phase.DONE
            return [HangUp(), self._result()]
        if self.phase is Phase.SPEAKING:
            self.phase = Phase.LISTENING
            self._listen_until = now + self.config.pause_seconds
        return []

    def stop(self, reason: StopReason, now: float) -> list[Action]:
        """The call is to end now: a last phrase, then hang up (nothing once closing, but
        a message being left in a mailbox is cut: it would be out of date)."""
        if self.phase in (Phase.CLOSING, Phase.DONE) and not self._for_mailbox():
            return []
        self._stopped = reason
        self._listen_until = None
        if self.phase is Phase.WAITING:
            self.phase = Phase.DONE
            return [HangUp(), self._result()]
        return self._close(now, HANDLED_ELSEWHERE if reason is StopReason.HANDLED else GOODBYE)

    def handle_timer(self, now: float) -> list[Action]:
        if self.phase is Phase.CLOSING and self._close_by is not None and now >= self._close_by:
            self.phase = Phase.DONE
            return [HangUp(), self._result()]
        if self.phase is not Phase.LISTENING or self._listen_until is None:
            return []
        if now < self._listen_until:
            return []
        self._listen_until = None
        if self._said < self.config.repetitions:
            self._said += 1
            self.phase = Phase.SPEAKING
            return [Play((MESSAGE, *MENU))]
        return self._close(now, NO_ACKNOWLEDGEMENT, GOODBYE)

    def hung_up(self, now: float) -> list[Action]:
        """The callee hung up (or the call broke): the result as it stands."""
        if self.phase is Phase.DONE:
            return []
        self.phase = Phase.DONE
        return [self._result()]

    @property
    def listening_for_beep(self) -> bool:
        """Whether a beep now would be acted on (``beep``): the session runs the beep
        detector only then."""
        return (
            self.config.leave_voicemail
            and not self._voicemail
            and self.phase in (Phase.SPEAKING, Phase.LISTENING)
        )

    def _for_mailbox(self) -> bool:
        """Saying the alert to a mailbox (neither cut by a stop nor ended yet)."""
        return self._voicemail and self.phase is Phase.CLOSING and self._stopped is None

    def _close(self, now: float, *phrases: str) -> list[Action]:
        self.phase = Phase.CLOSING
        self._close_by = now + self.config.max_closing_seconds
        return [Play(phrases)]

    def _result(self) -> ScriptResult:
        return ScriptResult(
            acknowledged=self._ack_digit is not None,
            digit=self._ack_digit,
            digits_heard=tuple(self._digits),
            repetitions=self._said,
            stopped=self._stopped,
            voicemail=self._voicemail,
        )
