"""SIP admission against the real testbed: a stranger on 127.0.0.2 who sniffed the dialog's
Call-ID and tags floods our SIP port with in-dialog requests (BYE, INFO digits, requests
with tags of no dialog) while a call through Kamailio is up. Nothing of it reaches the call,
and the callee's real BYE (through Kamailio, 127.0.0.1) still ends the call at once."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from testbed import Testbed

from tests.net.sip_harness import Harness, user_agent
from tests.net.test_sip_testbed import registered
from voipalert.sip.events import (
    CallAnswered,
    CallEnded,
    DigitReceived,
    RegistrationChanged,
    RegistrationState,
)
from voipalert.sip.message import Request, Response
from voipalert.sip.parser import parse_message

ATTACKER = "127.0.0.2"
FLOOD = 1000


def _forged(
    method: str, n: int, call_id: str, from_: str, to: str, target: tuple[str, int]
) -> bytes:
    body = b"Signal=1\r\nDuration=160\r\n" if method == "INFO" else b""
    extra = "Content-Type: application/dtmf-relay\r\n" if body else ""
    return (
        f"{method} sip:voipalert@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ATTACKER}:5060;branch=z9hG4bKflood{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: {from_}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {1000 + n} {method}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _arrived(ua: Harness, count: int) -> None:
    """Wait (at most 5 s) until ``count`` datagrams from the attacker reached the agent."""
    for _ in range(500):
        if sum(1 for d, _, peer in ua.wire if d == "recv" and peer[0] == ATTACKER) >= count:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("trust_testbed", [True, False], ids=["trusted-pbx", "no-trusted-hosts"])
async def test_tagged_flood_from_a_stranger_while_the_real_bye_ends_the_call(
    testbed: Testbed, trust_testbed: bool
) -> None:
    async with user_agent(testbed, "udp", trust_testbed=trust_testbed) as ua:
        ua.endpoint.act(ua.agent.register)
        await ua.wait_for(registered, 10)
        bot_since = len(testbed.events("voicemail"))
        call_id = await ua.call("voicemail")
        await ua.wait_for(lambda e: isinstance(e, CallAnswered), 10)
        # What a sniffer sees: the 200 OK to our INVITE, with Call-ID and both tags.
        ok = next(
            m
            for d, data, _ in ua.wire
            if d == "recv"
            and isinstance(m := parse_message(data), Response)
            and m.status == 200
            and m.cseq.method == "INVITE"
        )
        invite = next(
            m
            for d, data, _ in ua.wire
            if d == "send" and isinstance(m := parse_message(data), Request)
            and m.method == "INVITE"
        )  # fmt: skip
        theirs, ours = ok.headers.get("To") or "", invite.headers.get("From") or ""
        target = ("127.0.0.1", ua.agent.config.local_port)
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind((ATTACKER, 0))
        try:
            t0 = time.monotonic()
            for n in range(FLOOD):
                if n % 3 == 0:
                    data = _forged("BYE", n, ok.call_id, theirs, ours, target)
                elif n % 3 == 1:
                    data = _forged("INFO", n, ok.call_id, theirs, ours, target)
                else:  # tags of no dialog of ours: the out-of-dialog path
                    data = _forged("BYE", n, f"x{n}@{ATTACKER}", f"<sip:a@b>;tag=f{n}",
                                   f"<sip:c@d>;tag=t{n}", target)  # fmt: skip
                attacker.sendto(data, target)
                if n % 20 == 19:
                    # Self-clocked so the kernel's socket buffer drops nothing on a loaded
                    # machine: every forged request must reach the agent to mean anything.
                    await _arrived(ua, n + 1 - 20)
            await _arrived(ua, FLOOD)
            flood_seconds = time.monotonic() - t0
        finally:
            attacker.close()
        stats = ua.agent.stats
        refused = stats["untrusted_in_dialog"] + stats["untrusted"] + stats["rate_limited"]
        answered = sum(1 for line in ua.sent_lines() if line.startswith("SIP/2.0 481"))
        assert refused + answered + stats["overload"] >= 0.95 * FLOOD, dict(stats)
        assert stats["untrusted_in_dialog"] >= 0.95 * 667  # the sniffed-id BYEs and INFOs
        print(f"{FLOOD} forged requests in {flood_seconds:.2f} s: {dict(stats)}")
        assert answered <= ua.agent.config.max_server_transactions_per_source
        assert not [e for e in ua.events if isinstance(e, CallEnded | DigitReceived)]
        assert ua.agent.call_state(call_id) is not None
        # The callee hangs up: its BYE comes through Kamailio and ends the call at once.
        started = time.monotonic()
        await asyncio.to_thread(testbed.command, "voicemail", "hangup")
        ended = await ua.ended(call_id, 5)
        took = time.monotonic() - started
        assert ended.hung_up_by == "remote", ended
        assert took < 1.0, f"the real BYE took {took:.2f} s to end the call"
        closed = testbed.wait_event("voicemail", "CALL_CLOSED", bot_since, timeout=5)
        assert closed is not None
        sent = ua.sent_lines()
        assert "SIP/2.0 200 OK" in sent  # the BYE's 200
        assert not [e for e in ua.events if isinstance(e, DigitReceived)]
        # The testbed allows one contact per account: leave it free for the next test.
        ua.endpoint.act(ua.agent.unregister)
        await ua.wait_for(
            lambda e: (
                isinstance(e, RegistrationChanged)
                and e.status.state is RegistrationState.UNREGISTERED
            ),
            10,
        )
