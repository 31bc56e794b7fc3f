"""``voipalert call`` against the testbed's phone bots: the whole phone path of one call
(registration, INVITE with digest, RTP both ways, the call script, the three DTMF paths).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from numpy.typing import NDArray
from testbed import Testbed

from tests.cli.test_main import run
from tests.net.sip_harness import free_port
from tests.rtp_capture import RtpCapture
from tests.slot_audit import HeardAudit, StreamAudit, audit_heard, audit_stream
from voipalert.net.rtp_pacer import CATCH_UP_S


@pytest.fixture
def prompt_cache(cache: Path) -> Path:
    return cache


def call_env(testbed: Testbed, cache: Path) -> dict[str, str]:
    return {
        "VOIPALERT_SIP__REGISTRAR": testbed.registrar,
        "VOIPALERT_SIP__USERNAME": "voipalert",
        "VOIPALERT_SIP__PASSWORD": testbed.users["voipalert"],
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port()),
        "VOIPALERT_TTS__CACHE_DIR": str(cache),
    }


def call(
    testbed: Testbed, bot: str, cache: Path, *extra: str, **settings: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    env = call_env(testbed, cache) | settings
    result = run(
        "--log-level", "WARNING", "call", testbed.uri(bot),
        "--message", "Disk full on server SRV-DB-01", "--json", *extra, env=env,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return result, json.loads(lines[0])


def test_rfc4733_key_acknowledges(testbed: Testbed, prompt_cache: Path) -> None:
    result, report = call(testbed, "ack", prompt_cache)
    assert report["outcome"] == "acknowledged", report
    assert report["digit"] == "1" and report["digit_source"] == "rfc4733"
    assert report["sip_status"] == 200
    assert result.returncode == 0


def test_inband_tones_acknowledge_through_the_goertzel_path(
    testbed: Testbed, prompt_cache: Path
) -> None:
    result, report = call(testbed, "inband", prompt_cache)
    assert report["outcome"] == "acknowledged", report
    assert report["digit"] == "1" and report["digit_source"] == "inband"
    assert result.returncode == 0


VOICEMAIL_PHRASE = (
    "Hello. This is an alert from voipalert, left on your voicemail. It is not acknowledged yet."
)
# The testbed's mailbox bot: one second of silence, then a 1 kHz beep of 0.5 s, then it
# records (sip-testbed/supervisor.py).
BOT_BEEP_S = 1.0


def test_a_mailbox_gets_the_message_after_its_beep(testbed: Testbed, prompt_cache: Path) -> None:
    """The voicemail bot answers, beeps and records: we stop the greeting, say the alert
    once for the recording, and hang up; answered, not acknowledged (docs/dtmf.md §4).

    Every 20 ms slot of the mailbox phrase leaves once, in order, byte-exact, at its own
    timestamp, and the bot's recording holds the whole phrase at one alignment, after the
    beep. The one allowance: a stall of the process longer than the pacer's catch-up
    (docs/realtime.md §1) skips slots; then each slot missing on the wire must be one the
    sender counted and reported (``sent_skipped_slots``), never a silent loss, and the
    recording is not required clean (a hole shifts what follows)."""
    wire, heard, report = _mailbox_call(testbed, prompt_cache)
    quality = report["quality"]
    assert isinstance(quality, dict), report
    counted = int(quality["sent_skipped_slots"]) + int(quality["sent_dropped"])
    print(f"mailbox phrase on the wire: {wire.describe()}; sender counted {counted} unsent; "
          f"heard: {heard.describe()}")  # fmt: skip
    assert wire.found, wire.describe()
    assert wire.wrong == 0 and wire.out_of_order == 0, wire.describe()
    assert wire.skipped <= counted, (wire.describe(), quality)
    if counted == 0:
        assert wire.clean, wire.describe()
        assert heard.clean and heard.alignment >= 0.95, heard.describe()
    # After the beep began (the recording starts a little after the bot's own playback).
    assert heard.lag >= BOT_BEEP_S * 8000, heard.lag


def _mailbox_call(
    testbed: Testbed, prompt_cache: Path
) -> tuple[StreamAudit, HeardAudit, dict[str, object]]:
    before = set(testbed.recordings("voicemail"))
    rtp = free_port(even=True)
    ports = {
        "VOIPALERT_MEDIA__RTP_PORT_MIN": str(rtp),
        "VOIPALERT_MEDIA__RTP_PORT_MAX": str(rtp + 9),
    }
    with RtpCapture(range(rtp, rtp + 10)) as capture:
        result, report = call(testbed, "voicemail", prompt_cache, "--repetitions", "1", **ports)
    assert report["outcome"] == "answered_no_ack", report
    assert report["voicemail"] is True, report
    assert report["digit"] is None
    assert result.returncode == 1
    new = [p for p in testbed.recordings("voicemail") if p not in before]
    assert len(new) == 1
    heard, rate = soundfile.read(new[0], dtype="int16")
    assert rate == 8000
    phrase = _render_reference(prompt_cache, VOICEMAIL_PHRASE)
    # What we sent: every 20 ms slot of the mailbox phrase left once, in order, byte-exact
    # and on time (tests/slot_audit.py); a slot caught up after a short stall leaves up to
    # CATCH_UP_S late, which a jitter buffer still plays.
    streams = capture.streams()
    assert len(streams) == 1, {ssrc: len(p) for ssrc, p in streams.items()}
    wire = audit_stream(next(iter(streams.values())), phrase, late_s=CATCH_UP_S + 0.02)
    # What the mailbox recorded: the whole phrase at one alignment, every voiced slot in
    # place, and after the beep, where a mailbox records.
    return wire, audit_heard(heard, phrase), report


def _render_reference(cache: Path, text: str) -> NDArray[np.int16]:
    """A phrase as a call plays it, rendered by `voipalert say` from the same cache."""
    out = cache.parent / "reference.wav"
    result = run("say", text, "-o", str(out), env={"VOIPALERT_TTS__CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr
    pcm, _ = soundfile.read(out, dtype="int16")
    return np.asarray(pcm, dtype=np.int16)


def test_never_answered_is_no_answer_after_the_ring_timeout(
    testbed: Testbed, prompt_cache: Path
) -> None:
    _, report = call(testbed, "noanswer", prompt_cache, "--ring-timeout", "3")
    assert report["outcome"] == "no_answer"
    assert report["sip_status"] == 487


@pytest.mark.parametrize(
    ("bot", "outcome", "status"), [("busy", "busy", 486), ("offline", "unreachable", 404)]
)
def test_busy_and_unreachable(
    testbed: Testbed, prompt_cache: Path, bot: str, outcome: str, status: int
) -> None:
    result, report = call(testbed, bot, prompt_cache)
    assert (report["outcome"], report["sip_status"]) == (outcome, status)
    assert result.returncode == 1


def test_text_output_says_what_happened(testbed: Testbed, prompt_cache: Path) -> None:
    env = call_env(testbed, prompt_cache)
    result = run("--log-level", "WARNING", "call", testbed.uri("busy"), "--message", "x", env=env)
    assert "outcome: busy" in result.stdout
    assert "sip: 486" in result.stdout


def test_a_target_that_is_not_dialable_is_refused() -> None:
    result = run("call", "not a number!", "--message", "x")
    assert result.returncode == 1
    assert "cannot call" in result.stderr
