"""The call-in menu as a sans-IO machine: PIN, lockout, next, resolve, hang-up mid-menu."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.callin_menu import (
    ACKNOWLEDGED,
    ALREADY_HANDLED,
    ENTER_PIN,
    GOODBYE,
    LOCKED_OUT,
    MENU_FULL,
    MENU_NO_RESOLVE,
    NO_MORE,
    NO_OPEN_ALERTS,
    NOT_ALLOWED,
    RESOLVED,
    WELCOME,
    WRONG_PIN,
    Acknowledge,
    Action,
    CallinMenu,
    HangUp,
    Identify,
    MenuConfig,
    Phase,
    Play,
    Resolve,
    alert_prompt,
)

CONFIG = MenuConfig(max_pin_attempts=3, digit_timeout_seconds=5.0, pause_seconds=4.0)


def keys(menu: CallinMenu, text: str, now: float = 1.0) -> list[Action]:
    out: list[Action] = []
    for key in text:
        out += menu.digit(key, now)
    return out


def test_known_caller_without_pin_hears_alerts_and_acknowledges() -> None:
    menu = CallinMenu(CONFIG, pin_required=False)
    assert menu.answered(0.0) == [Play((WELCOME,)), Identify(None)]
    actions = menu.identified("alice", (7, 9), True, 0.1)
    assert actions == [Play((alert_prompt(7), MENU_FULL))]
    assert keys(menu, "1") == [Acknowledge(7)]
    assert menu.phase is Phase.WORKING
    assert keys(menu, "1") == []  # pressed twice while the store works: done once
    assert menu.done(True, 2.0) == [Play((ACKNOWLEDGED, alert_prompt(9), MENU_FULL))]
    assert keys(menu, "3") == [Play((NO_MORE, GOODBYE))]
    assert menu.playback_finished(3.0) == [HangUp()]
    assert menu.result.acknowledged == [7]
    assert menu.result.person == "alice"


def test_pin_entered_with_hash_identifies() -> None:
    menu = CallinMenu(CONFIG, pin_required=True)
    assert menu.answered(0.0) == [Play((WELCOME, ENTER_PIN))]
    assert keys(menu, "1234#") == [Identify("1234")]
    assert menu.identified("bob", (), False, 1.0) == [Play((NO_OPEN_ALERTS, GOODBYE))]


def test_pin_without_hash_is_taken_after_the_pause() -> None:
    menu = CallinMenu(CONFIG, pin_required=True)
    menu.answered(0.0)
    menu.playback_finished(2.0)
    assert keys(menu, "42", now=3.0) == []
    assert menu.next_deadline() == 8.0
    assert menu.handle_timer(8.0) == [Identify("42")]


def test_wrong_pin_is_asked_again_then_locks_out() -> None:
    menu = CallinMenu(CONFIG, pin_required=True)
    menu.answered(0.0)
    keys(menu, "1111#")
    assert menu.identified(None, (), False, 1.0) == [Play((WRONG_PIN, ENTER_PIN))]
    keys(menu, "2222#")
    menu.identified(None, (), False, 2.0)
    keys(menu, "3333#")
    assert menu.identified(None, (), False, 3.0) == [Play((LOCKED_OUT, GOODBYE))]
    assert menu.result.locked_out
    assert menu.result.pin_failures == 3
    assert keys(menu, "4444#") == []  # no more tries in this call
    assert menu.playback_finished(4.0) == [HangUp()]


def test_silence_at_the_pin_prompt_counts_as_a_wrong_attempt() -> None:
    menu = CallinMenu(CONFIG, pin_required=True)
    menu.answered(0.0)
    menu.playback_finished(1.0)
    assert menu.handle_timer(6.0) == [Play((WRONG_PIN, ENTER_PIN))]
    assert menu.result.pin_failures == 1


def test_the_pin_is_cut_at_its_maximum_length() -> None:
    menu = CallinMenu(MenuConfig(max_pin_digits=4), pin_required=True)
    menu.answered(0.0)
    assert keys(menu, "123456") == [Identify("1234")]


def test_resolve_only_when_allowed() -> None:
    menu = CallinMenu(CONFIG, pin_required=False)
    menu.answered(0.0)
    assert menu.identified("carol", (5,), False, 0.0) == [Play((alert_prompt(5), MENU_NO_RESOLVE))]
    assert keys(menu, "2") == [Play((NOT_ALLOWED, MENU_NO_RESOLVE))]
    menu = CallinMenu(CONFIG, pin_required=False)
    menu.answered(0.0)
    menu.identified("dave", (5,), True, 0.0)
    assert keys(menu, "2") == [Resolve(5)]
    assert menu.done(True, 1.0) == [Play((RESOLVED, NO_MORE, GOODBYE))]
    assert menu.result.resolved == [5]


def test_already_handled_is_said_and_the_next_alert_follows() -> None:
    menu = CallinMenu(CONFIG, pin_required=False)
    menu.answered(0.0)
    menu.identified("erin", (1, 2), False, 0.0)
    keys(menu, "1")
    assert menu.done(False, 1.0) == [Play((ALREADY_HANDLED, alert_prompt(2), MENU_NO_RESOLVE))]
    assert menu.result.already_handled == [1]


def test_no_key_repeats_the_menu_then_goes_on() -> None:
    menu = CallinMenu(MenuConfig(repetitions=2, pause_seconds=4.0), pin_required=False)
    menu.answered(0.0)
    menu.identified("f", (1, 2), False, 0.0)
    menu.playback_finished(5.0)
    assert menu.handle_timer(9.0) == [Play((MENU_NO_RESOLVE,))]
    menu.playback_finished(10.0)
    assert menu.handle_timer(14.0) == [Play((alert_prompt(2), MENU_NO_RESOLVE))]


def test_hang_up_mid_menu_ends_the_machine() -> None:
    menu = CallinMenu(CONFIG, pin_required=False)
    menu.answered(0.0)
    menu.identified("g", (1,), True, 0.0)
    assert menu.hung_up(1.0) == []
    assert menu.phase is Phase.DONE
    assert menu.result.hung_up_by_caller
    assert menu.next_deadline() is None
    assert keys(menu, "1") == []
    assert menu.done(True, 2.0) == []


def test_the_call_is_bounded() -> None:
    menu = CallinMenu(MenuConfig(max_call_seconds=60.0), pin_required=True)
    menu.answered(0.0)
    # Keys one by one, each before the digit pause, never a #: the call limit still ends it.
    for t in range(1, 8):
        menu.digit("1" if t % 2 else "*", float(t))
    assert menu.phase is Phase.PIN
    assert menu.handle_timer(60.0) == [Play((GOODBYE,))]
    assert menu.playback_finished(61.0) == [HangUp()]


def test_closing_is_bounded_when_the_last_phrase_never_ends() -> None:
    menu = CallinMenu(CONFIG, pin_required=False)
    menu.answered(0.0)
    menu.identified("h", (), False, 1.0)
    deadline = menu.next_deadline()
    assert deadline == 1.0 + CONFIG.max_closing_seconds
    assert menu.handle_timer(deadline) == [HangUp()]


@settings(max_examples=300, deadline=None)
@given(
    pin_required=st.booleans(),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("digit"), st.sampled_from("0123456789*#ABCD")),
            st.tuples(st.just("played"), st.just("")),
            st.tuples(st.just("timer"), st.just("")),
            st.tuples(st.just("identified"), st.sampled_from(["", "alice"])),
            st.tuples(st.just("done"), st.sampled_from(["yes", "no"])),
        ),
        max_size=60,
    ),
)
def test_any_input_sequence_keeps_the_machine_sane(
    pin_required: bool, steps: list[tuple[str, str]]
) -> None:
    """Whatever arrives in whatever order: one store request at a time, never an
    acknowledgement of an alert not offered, and the call always ends by its bounds."""
    config = MenuConfig(max_call_seconds=120.0)
    menu = CallinMenu(config, pin_required=pin_required)
    now = 0.0
    outstanding = 0
    actions = menu.answered(now)
    for kind, value in steps:
        now += 0.5
        match kind:
            case "digit":
                actions = menu.digit(value, now)
            case "played":
                actions = menu.playback_finished(now)
            case "timer":
                deadline = menu.next_deadline()
                now = max(now, deadline or now)
                actions = menu.handle_timer(now)
            case "identified":
                actions = menu.identified(value or None, (1, 2), value == "alice", now)
            case _:
                actions = menu.done(value == "yes", now)
                if actions:
                    outstanding -= 1
        for action in actions:
            if isinstance(action, Acknowledge | Resolve):
                outstanding += 1
                assert action.alert_id in (1, 2)
        assert outstanding in (0, 1)
    now = _left_alone(menu, now)
    assert menu.phase is Phase.DONE
    assert now <= config.max_call_seconds + config.max_closing_seconds + 60


def _left_alone(menu: CallinMenu, now: float) -> float:
    """Run the clock (answering the adapter's requests): the call ends by its bounds."""
    for _ in range(200):
        if menu.phase is Phase.DONE:
            break
        deadline = menu.next_deadline()
        if deadline is None:
            # Waiting on the adapter (the store, or the PIN check): answer it.
            menu.done(True, now)
            menu.identified(None, (), False, now)
            menu.playback_finished(now)
            continue
        now = max(now, deadline)
        menu.handle_timer(now)
        menu.playback_finished(now)
    return now
