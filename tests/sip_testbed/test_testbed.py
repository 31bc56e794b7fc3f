"""The SIP testbed itself, proven with real packets between real peers.

Each check reads what the peers actually exchanged: baresip's SIP trace (``-s``) for the
messages on the wire, its ctrl_tcp events for call states and received RFC 4733 digits, and
its recordings for in-band audio (decoded by multimon-ng, an independent DTMF decoder).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from testbed import BotSpec, Testbed, TestbedError, group_members, start

from tests.conftest import TestbedFactory
from tests.requires import need_program

_BLOCK = re.compile(r"^(UDP|TCP) (\S+) -> (\S+)\r?\n(.+?)\r?\n", re.MULTILINE)


def test_bot_registers_after_a_digest_challenge(testbed: Testbed) -> None:
    trace = testbed.sip_trace("ack")
    # The trace marks each message with "PROTO source -> destination"; the registrar is
    # the side at the testbed's port.
    registrar = f"{testbed.host}:{testbed.port}"
    flow = []
    for match in _BLOCK.finditer(trace):
        _, source, _, first_line = match.groups()
        flow.append(("in" if source == registrar else "out", first_line.strip()))
    register_flow = [
        (d, line) for d, line in flow if line.startswith("REGISTER") or line.startswith("SIP/2.0")
    ][:4]
    assert [d for d, _ in register_flow] == ["out", "in", "out", "in"], flow
    assert register_flow[0][1].startswith("REGISTER sip:")
    assert register_flow[1][1] == "SIP/2.0 401 Unauthorized"
    assert register_flow[2][1].startswith("REGISTER sip:")
    assert register_flow[3][1] == "SIP/2.0 200 OK"
    assert 'WWW-Authenticate: Digest realm="testbed"' in trace
    assert 'qop="auth"' in trace


def test_call_through_kamailio_is_answered_and_rfc4733_digit_arrives(testbed: Testbed) -> None:
    since = testbed.dial("caller", "ack")
    try:
        assert testbed.wait_event("caller", "CALL_ESTABLISHED", since, timeout=10)
        digit = testbed.wait_event("caller", "CALL_DTMF_START", since, timeout=10)
        assert digit is not None, "the ack bot's RFC 4733 digit never reached the caller"
        assert digit["param"] == "1"
    finally:
        testbed.command("caller", "hangup")
        assert testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10)
    trace = testbed.sip_trace("caller")
    # Kamailio challenges the INVITE (407) before relaying it.
    assert "SIP/2.0 407 Proxy Authentication Required" in trace
    assert "Proxy-Authorization: Digest" in trace


def test_inband_bot_sends_tones_and_no_telephone_event(testbed: Testbed) -> None:
    need_program("multimon-ng", "apt-get install multimon-ng")
    before = set(testbed.recordings("caller"))
    since = testbed.dial("caller", "inband")
    try:
        assert testbed.wait_event("caller", "CALL_ESTABLISHED", since, timeout=10)
        # The bot plays its digit twice, 3 s after answering; wait past the second press.
        assert testbed.wait_event("caller", "CALL_DTMF_START", since, timeout=5.5) is None
    finally:
        testbed.command("caller", "hangup")
        assert testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10)
    new = [p for p in testbed.recordings("caller") if p not in before]
    assert len(new) == 1, new
    decoded = _multimon_dtmf(new[0])
    assert decoded.count("1") >= 1, f"no in-band '1' heard by the caller: {decoded}"


def _multimon_dtmf(wav: Path) -> list[str]:
    result = subprocess.run(
        ["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "wav", str(wav)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return re.findall(r"DTMF: (\S)", result.stdout)


def test_never_answering_bot_still_rings_after_ten_seconds(testbed: Testbed) -> None:
    since = testbed.dial("caller", "noanswer")
    try:
        assert testbed.wait_event("caller", "CALL_RINGING", since, timeout=5)
        assert testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10) is None
        assert testbed.wait_event("caller", "CALL_ESTABLISHED", since, timeout=0) is None
    finally:
        testbed.command("caller", "hangup")
        assert testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10)


def test_busy_bot_answers_486(testbed: Testbed) -> None:
    since = testbed.dial("caller", "busy")
    closed = testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10)
    assert closed is not None
    assert closed["param"].startswith("486 ")
    assert testbed.wait_event("caller", "CALL_ESTABLISHED", since, timeout=0) is None


def test_unregistered_account_is_unreachable(testbed: Testbed) -> None:
    assert "offline" in testbed.users and "offline" not in testbed.bots
    since = testbed.dial("caller", "offline")
    closed = testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10)
    assert closed is not None
    assert closed["param"].split()[0] in ("404", "480")


def test_every_bot_records_what_it_hears(testbed: Testbed) -> None:
    since = testbed.dial("caller", "voicemail")
    try:
        assert testbed.wait_event("caller", "CALL_ESTABLISHED", since, timeout=10)
        assert testbed.wait_event("voicemail", "CALL_ESTABLISHED", timeout=5)
    finally:
        testbed.command("caller", "hangup")
        assert testbed.wait_event("caller", "CALL_CLOSED", since, timeout=10)
    assert testbed.wait_event("voicemail", "CALL_CLOSED", timeout=10)
    assert testbed.recordings("voicemail"), "the answering bot wrote no recording"


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (zombies hold nothing)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_processes_and_files_are_gone_after_stop(testbed_factory: TestbedFactory) -> None:
    tb = testbed_factory([BotSpec("alice", "dtmf"), BotSpec("bob", "noanswer")])
    run_dir = tb.run_dir
    members = group_members(tb.pgid)
    # supervisor + Kamailio's main and worker processes + two baresip bots
    assert len(members) >= 4, members
    assert _processes_mentioning(str(run_dir))
    tb.stop()
    assert group_members(tb.pgid) == []
    assert _processes_mentioning(str(run_dir)) == []
    assert not run_dir.exists()


def test_failed_start_leaves_nothing_behind(
    testbed_factory: TestbedFactory, tmp_path: Path
) -> None:
    # A bot whose user is not in users.txt makes the supervisor fail after Kamailio is
    # already up: the start must report it and take Kamailio down again.
    run_dir = tmp_path / "tb"
    with pytest.raises(TestbedError, match="no such user"):
        start(run_dir=run_dir, bots=[BotSpec("nobody-here", "dtmf")])
    assert _processes_mentioning(str(run_dir)) == []
    assert not run_dir.exists()


def test_bot_spec_parsing() -> None:
    assert BotSpec.parse("ack=dtmf:5:2.5") == BotSpec("ack", "dtmf", "5", 2.5)
    assert BotSpec.parse("b=busy/tcp").transport == "tcp"
    assert BotSpec.parse("s=dtmf:1:2/tls").transport == "tls"
    with pytest.raises(TestbedError, match="udp, tcp or tls"):
        BotSpec.parse("x=dtmf/sctp")
    with pytest.raises(TestbedError, match="unknown mode"):
        BotSpec.parse("x=ringtone")
    with pytest.raises(TestbedError, match="DTMF key"):
        BotSpec.parse("x=dtmf:Z")
