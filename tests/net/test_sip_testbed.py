"""The user agent against real Kamailio and baresip phones (sip-testbed/), over UDP and TCP.

Each test reads the real messages on our socket (the endpoint's wire trace) and the bots'
own view (their ctrl_tcp events), so a pass means the peers agree with us.
"""

from __future__ import annotations

import asyncio

import pytest
from testbed import Testbed

from tests.net.sip_harness import user_agent
from voipalert.sip.events import (
    CallAnswered,
    CallEnded,
    CallOutcome,
    RegistrationChanged,
    RegistrationState,
    SipEvent,
)

RS = RegistrationState
TRANSPORTS = ["udp", "tcp"]


def registered(event: SipEvent) -> bool:
    return isinstance(event, RegistrationChanged) and event.status.state in (
        RS.REGISTERED,
        RS.FAILING,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_register_401_then_200(testbed: Testbed, transport: str) -> None:
    async with user_agent(testbed, transport) as ua:  # type: ignore[arg-type]
        ua.endpoint.act(ua.agent.register)
        event = await ua.wait_for(registered, 10)
        assert isinstance(event, RegistrationChanged)
        assert event.status.state is RS.REGISTERED, event.status
        assert [line for line in ua.received_lines()] == [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
        ]
        assert ua.sent_lines() == [f"REGISTER {testbed.registrar} SIP/2.0"] * 2
        ua.endpoint.act(ua.agent.unregister)
        await ua.wait_for(
            lambda e: isinstance(e, RegistrationChanged) and e.status.state is RS.UNREGISTERED, 10
        )


async def test_registration_is_refreshed_before_expiry(testbed: Testbed) -> None:
    # The testbed's Kamailio grants as little as 12 s (its min_expires): ask for that, so
    # the refresh comes half-way, after 6 s.
    expires = 12
    async with user_agent(testbed, register_expires=expires) as ua:
        ua.endpoint.act(ua.agent.register)
        await ua.wait_for(registered, 10)
        first = ua.agent.registration
        assert first is not None and first.expires_at is not None
        first_count = len([line for line in ua.sent_lines() if line.startswith("REGISTER")])
        end = first.expires_at

        def refreshed(event: SipEvent) -> bool:
            return (
                isinstance(event, RegistrationChanged)
                and event.status.state is RS.REGISTERED
                and (event.status.expires_at or 0.0) > end
            )

        event = await ua.wait_for(refreshed, expires)
        loop = asyncio.get_running_loop()
        assert loop.time() < end, "the binding was refreshed only after it expired"
        assert isinstance(event, RegistrationChanged)
        status = ua.agent.registration
        assert status is not None and status.state is RS.REGISTERED
        registers = [line for line in ua.sent_lines() if line.startswith("REGISTER")]
        assert len(registers) > first_count, "no refresh REGISTER was sent"
        assert status.expires_at is not None and status.expires_at - loop.time() > expires / 2


async def test_wrong_password_fails_after_two_registers(testbed: Testbed) -> None:
    async with user_agent(testbed, password="not-the-password") as ua:
        ua.endpoint.act(ua.agent.register)
        event = await ua.wait_for(registered, 10)
        assert isinstance(event, RegistrationChanged)
        assert event.status.state is RS.FAILING and event.status.fatal
        await asyncio.sleep(1.0)  # nothing more may follow: no REGISTER flood
        assert ua.sent_lines() == [f"REGISTER {testbed.registrar} SIP/2.0"] * 2


async def _hold_call_for(testbed: Testbed, transport: str, bot: str, seconds: float) -> None:
    async with user_agent(testbed, transport) as ua:  # type: ignore[arg-type]
        ua.endpoint.act(ua.agent.register)
        await ua.wait_for(registered, 10)
        bot_since = len(testbed.events(bot))
        call_id = await ua.call(bot)
        answered = await ua.wait_for(lambda e: isinstance(e, CallAnswered), 10)
        assert isinstance(answered, CallAnswered)
        assert answered.media.port > 0
        await asyncio.sleep(seconds)
        # Still up: nobody sent BYE (a wrong 2xx ACK makes the callee drop at 32 s).
        assert not [e for e in ua.events if isinstance(e, CallEnded)]
        assert testbed.wait_event(bot, "CALL_CLOSED", bot_since, timeout=0) is None
        assert ua.rtp_sinks[0].packets > 40 * 25, "the bot's audio did not reach us"
        ua.endpoint.act(lambda now: ua.agent.hang_up(call_id, now))
        ended = await ua.ended(call_id, 10)
        assert ended.outcome is CallOutcome.ANSWERED and ended.hung_up_by == "local"
        closed = testbed.wait_event(bot, "CALL_CLOSED", bot_since, timeout=5)
        assert closed is not None
        sent = ua.sent_lines()
        assert any(line.startswith("ACK ") for line in sent)
        assert any(line.startswith("BYE ") for line in sent)


async def test_answered_calls_stay_up_40_seconds_over_udp_and_tcp(testbed: Testbed) -> None:
    # Both transports at once, to different bots, so the suite waits 40 s only once.
    async with asyncio.TaskGroup() as group:
        group.create_task(_hold_call_for(testbed, "udp", "voicemail", 40))
        group.create_task(_hold_call_for(testbed, "tcp", "ack", 40))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_never_answered_call_is_cancelled_at_the_ring_timeout(
    testbed: Testbed, transport: str
) -> None:
    async with user_agent(testbed, transport) as ua:  # type: ignore[arg-type]
        bot_since = len(testbed.events("noanswer"))
        call_id = await ua.call("noanswer", ring_timeout=4)
        ended = await ua.ended(call_id, 15)
        assert ended.outcome is CallOutcome.NO_ANSWER
        assert ended.status == 487
        assert any(line.startswith("CANCEL ") for line in ua.sent_lines())
        assert "SIP/2.0 487 Request Terminated" in ua.received_lines()
        assert testbed.wait_event("noanswer", "CALL_CLOSED", bot_since, timeout=5)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_busy_bot_gives_busy(testbed: Testbed, transport: str) -> None:
    async with user_agent(testbed, transport) as ua:  # type: ignore[arg-type]
        call_id = await ua.call("busy")
        ended = await ua.ended(call_id, 15)
        assert ended.outcome is CallOutcome.BUSY and ended.status == 486


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unregistered_account_is_unreachable(testbed: Testbed, transport: str) -> None:
    async with user_agent(testbed, transport) as ua:  # type: ignore[arg-type]
        call_id = await ua.call("offline")
        ended = await ua.ended(call_id, 15)
        assert ended.outcome is CallOutcome.UNREACHABLE
        assert ended.status in (404, 480)
        # The INVITE was challenged (407) and retried with credentials first.
        assert "SIP/2.0 407 Proxy Authentication Required" in ua.received_lines()
