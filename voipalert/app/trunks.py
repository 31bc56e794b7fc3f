"""The node's SIP trunks (docs/sip-failover.md): ``[sip]`` is the first, each
``[[sip.trunk]]`` a further one, each with its own ``Phone``; their state for ``/readyz`` and
``/metrics``."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import timedelta

from voipalert.app.config import dns_config, media_config, sip_tls, trunk_configs
from voipalert.calls import Phone
from voipalert.clock import Clock
from voipalert.errors import VoipAlertError
from voipalert.ingest.health import SipState, TrunkHealth
from voipalert.settings import Settings
from voipalert.sip.events import RegistrationState
from voipalert.sip.failover import TrunkState
from voipalert.trunks import Trunk, Trunks


class TrunkStartError(VoipAlertError):
    """A further trunk's SIP port cannot be bound."""


async def start_trunks(settings: Settings, phone: Phone, stack: AsyncExitStack) -> Trunks:
    """``phone`` (``[sip]``, started by the caller) first, then one started phone per
    ``[[sip.trunk]]``, stopped (un-registered) with ``stack``."""
    first = Trunk(settings.sip.name, phone, register=phone.agent.config.registrar is not None)
    others: list[Trunk] = []
    for config in trunk_configs(settings):
        other = Phone(
            config.ua, config.bind, media_config(settings), tls=sip_tls(settings),
            script=phone.script, pacer=phone.pacer(), dns=dns_config(settings),
        )  # fmt: skip
        other.analysis = phone.analysis
        try:
            await other.start(register=config.register)
        except OSError as exc:
            raise TrunkStartError(
                f"cannot use SIP {settings.sip.transport} port {config.bind[0]}:{config.bind[1]} "
                f"for trunk {config.name}: {exc.strerror or exc} ([[sip.trunk]] local_port)"
            ) from None
        stack.push_async_callback(other.stop)
        others.append(Trunk(config.name, other, register=config.register))
    return Trunks([first, *others], float(settings.sip.failover_cooldown_seconds))


def trunks_sip_state(trunks: Trunks) -> SipState:
    """One registered trunk is enough to be ready (docs/sip-failover.md)."""
    states = [phone_sip_state(t.phone) for t in trunks.trunks]
    for state in (SipState.REGISTERED, SipState.NOT_CONFIGURED, SipState.REGISTERING):
        if state in states:
            return state
    return SipState.FAILED


def phone_sip_state(phone: Phone) -> SipState:
    status = phone.registration
    if status is None:
        return SipState.NOT_CONFIGURED
    return {
        RegistrationState.REGISTERED: SipState.REGISTERED,
        RegistrationState.REGISTERING: SipState.REGISTERING,
        RegistrationState.UNREGISTERING: SipState.REGISTERING,
    }.get(status.state, SipState.FAILED)


def trunk_health(trunks: Trunks, clock: Clock) -> list[TrunkHealth]:
    """Each trunk's state, with loop times turned into wall-clock times."""
    now = asyncio.get_running_loop().time()
    wall = clock.now_utc()
    health = []
    for trunk, status in zip(trunks.trunks, trunks.statuses(now), strict=True):
        registering = trunk.phone.registration is not None
        up = status.state is TrunkState.REGISTERED or (
            status.state is TrunkState.UNKNOWN and not registering
        )
        since = None if status.since is None else wall - timedelta(seconds=now - status.since)
        health.append(
            TrunkHealth(
                status.name, status.state.value, up, since, status.last_error, status.failovers
            )
        )
    return health
