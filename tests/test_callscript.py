"""The call script, walked with explicit time: what is said, what each key does."""

from __future__ import annotations

from voipalert.callscript import (
    ACKNOWLEDGED,
    GOODBYE,
    GREETING,
    HANDLED_ELSEWHERE,
    INVALID_KEY,
    MENU,
    MESSAGE,
    NO_ACKNOWLEDGEMENT,
    VOICEMAIL,
    CallScript,
    HangUp,
    Phase,
    Play,
    ScriptConfig,
    ScriptResult,
    StopReason,
    StopRequest,
)


def test_answer_greets_then_says_the_message_and_the_menu() -> None:
    script = CallScript()
    assert script.answered(0.0) == [Play((GREETING, MESSAGE, *MENU))]
    assert script.answered(0.1) == []  # a second 2xx does not restart anything


def test_ack_key_interrupts_thanks_and_hangs_up() -> None:
    script = CallScript()
    script.answered(0.0)
    assert script.digit("1", 2.0) == [Play((ACKNOWLEDGED, GOODBYE))]
    assert script.digit("1", 2.1) == []  # a redundant key while closing changes nothing
    assert script.playback_finished(4.0) == [
        HangUp(),
        ScriptResult(acknowledged=True, digit="1", digits_heard=("1",), repetitions=1),
    ]
    assert script.phase is Phase.DONE


def test_repeat_key_says_the_message_again() -> None:
    script = CallScript()
    script.answered(0.0)
    script.playback_finished(10.0)
    assert script.digit("0", 11.0) == [Play((MESSAGE, *MENU))]


def test_other_keys_get_a_reminder() -> None:
    script = CallScript()
    script.answered(0.0)
    assert script.digit("7", 1.0) == [Play((INVALID_KEY,))]
    assert script.digit("#", 2.0) == [Play((INVALID_KEY,))]
    script.playback_finished(5.0)
    assert script.next_deadline() == 8.0


def test_no_key_repeats_then_ends_unacknowledged() -> None:
    script = CallScript(ScriptConfig(repetitions=2, pause_seconds=3.0))
    script.answered(0.0)
    assert script.playback_finished(10.0) == []
    assert script.next_deadline() == 13.0
    assert script.handle_timer(12.9) == []
    assert script.handle_timer(13.0) == [Play((MESSAGE, *MENU))]
    assert script.next_deadline() is None  # speaking: no timer until the playback ends
    script.playback_finished(20.0)
    assert script.handle_timer(23.0) == [Play((NO_ACKNOWLEDGEMENT, GOODBYE))]
    assert script.digit("1", 23.5) == []  # too late: it is saying goodbye
    actions = script.playback_finished(25.0)
    assert actions[0] == HangUp()
    result = actions[1]
    assert isinstance(result, ScriptResult)
    assert not result.acknowledged and result.repetitions == 2


def test_keys_before_the_answer_do_not_count() -> None:
    # Early media (183) can carry tones: only the answered call listens for keys.
    script = CallScript()
    assert script.digit("1", 0.0) == []
    script.answered(1.0)
    assert script.digit("1", 2.0) == [Play((ACKNOWLEDGED, GOODBYE))]


def test_a_stuck_repeat_key_cannot_hold_the_line() -> None:
    script = CallScript(ScriptConfig(max_repeat_requests=2))
    script.answered(0.0)
    assert script.digit("0", 1.0) == [Play((MESSAGE, *MENU))]
    assert script.digit("0", 2.0) == [Play((MESSAGE, *MENU))]
    assert script.digit("0", 3.0) == [Play((INVALID_KEY,))]


def test_callee_hanging_up_gives_the_result_so_far() -> None:
    script = CallScript()
    script.answered(0.0)
    script.digit("5", 1.0)
    (result,) = script.hung_up(2.0)
    assert result == ScriptResult(False, None, ("5",), 1)
    assert script.hung_up(3.0) == []


def test_every_prompt_the_call_uses_is_in_both_catalogs() -> None:
    from voipalert import callscript
    from voipalert.tts.catalog import load_catalog

    used = {
        value
        for name, value in vars(callscript).items()
        if name.isupper() and isinstance(value, str)
    }
    assert callscript.HANDLED_ELSEWHERE in used
    for language in ("en", "fr"):
        assert used <= set(load_catalog(language).phrases), language


# ------------------------------------------------------------------ stop requests


def test_stop_while_ringing_hangs_up_at_once() -> None:
    script = CallScript()
    assert script.stop(StopReason.HANDLED, 1.0) == [
        HangUp(),
        ScriptResult(False, None, (), 0, stopped=StopReason.HANDLED),
    ]
    assert script.answered(1.5) == []  # a 2xx racing the CANCEL starts nothing


def test_stop_while_speaking_says_handled_elsewhere_then_hangs_up() -> None:
    script = CallScript()
    script.answered(0.0)
    assert script.stop(StopReason.HANDLED, 2.0) == [Play((HANDLED_ELSEWHERE,))]
    assert script.digit("1", 2.5) == []  # the alert is handled: a key no longer acknowledges
    assert script.stop(StopReason.SHUTDOWN, 2.6) == []  # the first reason stands
    (hang_up, result) = script.playback_finished(5.0)
    assert hang_up == HangUp()
    assert result == ScriptResult(False, None, (), 1, stopped=StopReason.HANDLED)


def test_shutdown_says_goodbye() -> None:
    script = CallScript()
    script.answered(0.0)
    script.playback_finished(10.0)  # listening
    assert script.stop(StopReason.SHUTDOWN, 11.0) == [Play((GOODBYE,))]
    assert script.next_deadline() == 11.0 + ScriptConfig().max_closing_seconds


def test_a_stop_after_the_key_keeps_the_acknowledgement() -> None:
    script = CallScript()
    script.answered(0.0)
    script.digit("1", 2.0)
    assert script.stop(StopReason.HANDLED, 2.1) == []
    (_, result) = script.playback_finished(4.0)
    assert isinstance(result, ScriptResult)
    assert result.acknowledged and result.stopped is None


def test_closing_is_bounded_when_the_last_phrase_never_ends() -> None:
    script = CallScript(ScriptConfig(max_closing_seconds=5.0))
    script.answered(0.0)
    script.stop(StopReason.HANDLED, 1.0)
    assert script.handle_timer(5.9) == []
    assert script.next_deadline() == 6.0
    assert script.handle_timer(6.0) == [
        HangUp(),
        ScriptResult(False, None, (), 1, stopped=StopReason.HANDLED),
    ]
    assert script.playback_finished(6.5) == []


def test_stop_request_first_reason_wins_and_listeners_run_once() -> None:
    request = StopRequest()
    heard: list[StopReason] = []
    request.subscribe(heard.append)
    assert request.request(StopReason.HANDLED)
    assert not request.request(StopReason.SHUTDOWN)
    assert not request.request(StopReason.HANDLED)
    request.subscribe(heard.append)  # a late subscriber hears the reason at once
    assert heard == [StopReason.HANDLED, StopReason.HANDLED]
    assert request.reason is StopReason.HANDLED


# ------------------------------------------------------------------ mailboxes


def test_a_beep_says_the_alert_once_for_the_mailbox_then_hangs_up() -> None:
    script = CallScript()
    script.answered(0.0)
    assert script.beep(1.2) == [Play((VOICEMAIL, MESSAGE, GOODBYE))]
    assert script.beep(1.5) == []  # its message is being left: once
    actions = script.playback_finished(15.0)
    assert actions[0] == HangUp()
    result = actions[1]
    assert isinstance(result, ScriptResult)
    assert (result.acknowledged, result.voicemail) == (False, True)


def test_a_beep_while_listening_after_the_menu_leaves_the_message_too() -> None:
    script = CallScript()
    script.answered(0.0)
    script.playback_finished(10.0)
    assert script.phase is Phase.LISTENING
    assert script.beep(11.0) == [Play((VOICEMAIL, MESSAGE, GOODBYE))]
    assert script.next_deadline() is not None  # bounded like any closing phrase


def test_a_beep_before_the_answer_or_after_the_end_does_nothing() -> None:
    script = CallScript()
    assert script.beep(0.0) == []  # early media: a ring-back, an announcement
    script.answered(1.0)
    script.digit("1", 2.0)
    assert script.beep(3.0) == []  # acknowledged and closing: nothing to leave


def test_a_key_during_the_mailbox_message_means_a_person_who_can_acknowledge() -> None:
    script = CallScript()
    script.answered(0.0)
    script.beep(1.0)
    assert script.digit("1", 3.0) == [Play((ACKNOWLEDGED, GOODBYE))]
    result = script.playback_finished(5.0)[1]
    assert isinstance(result, ScriptResult)
    assert (result.acknowledged, result.voicemail) == (True, False)


def test_a_stop_cuts_the_mailbox_message() -> None:
    script = CallScript()
    script.answered(0.0)
    script.beep(1.0)
    assert script.stop(StopReason.HANDLED, 4.0) == [Play((HANDLED_ELSEWHERE,))]
    assert script.stop(StopReason.SHUTDOWN, 4.5) == []
    result = script.playback_finished(6.0)[1]
    assert isinstance(result, ScriptResult)
    assert result.stopped is StopReason.HANDLED


def test_the_beep_detector_is_wanted_only_while_a_beep_would_be_acted_on() -> None:
    script = CallScript()
    wanted = [script.listening_for_beep]  # before the answer
    script.answered(0.0)
    wanted.append(script.listening_for_beep)  # speaking
    script.playback_finished(10.0)
    wanted.append(script.listening_for_beep)  # listening for a key
    script.beep(11.0)
    wanted.append(script.listening_for_beep)  # leaving the message
    script.digit("2", 12.0)
    wanted.append(script.listening_for_beep)  # a person after all: the menu again
    script.digit("1", 13.0)
    wanted.append(script.listening_for_beep)  # acknowledged and closing
    assert wanted == [False, True, True, False, True, False]
    assert not CallScript(ScriptConfig(leave_voicemail=False)).listening_for_beep


def test_mailboxes_can_be_left_alone() -> None:
    script = CallScript(ScriptConfig(leave_voicemail=False))
    script.answered(0.0)
    assert script.beep(1.0) == []
