"""``voipalert sip register``: register once with the configured registrar and report."""

from __future__ import annotations

import argparse
import asyncio
import errno
import secrets
import ssl
import sys
from typing import TYPE_CHECKING

from voipalert.cli.call_cmd import beside_serve, port_taken_note

if TYPE_CHECKING:
    from voipalert.net.sip_dns import DnsConfig
    from voipalert.sip.config import UAConfig
    from voipalert.sip.dialog import Address
    from voipalert.sip.events import RegistrationState, RegistrationStatus, SipEvent

WAIT_SECONDS = 45.0  # longer than Timer F (32 s), so a silent registrar is reported


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sip = subparsers.add_parser("sip", help="SIP diagnostics")
    actions = sip.add_subparsers(dest="sip_command", metavar="ACTION", required=True)
    register = actions.add_parser(
        "register",
        help="register with [sip] registrar, print the outcome, then un-register "
        "(exit 0 on success, 1 on failure)",
    )
    register.add_argument(
        "--keep", action="store_true", help="leave the binding in place (no un-REGISTER)"
    )
    register.set_defaults(func=run_register)


def run_register(args: argparse.Namespace) -> int:
    from voipalert.app.config import dns_config, sip_bind, sip_tls, ua_config  # heavy: call_cmd
    from voipalert.settings import load_settings

    settings = load_settings(args.config)
    config, bind, tls = ua_config(settings), sip_bind(settings), sip_tls(settings)
    return asyncio.run(_register(config, bind, tls, keep=args.keep, dns=dns_config(settings)))


async def _register(
    config: UAConfig, bind: Address, tls: ssl.SSLContext | None, *, keep: bool,
    dns: DnsConfig | None = None,
) -> int:  # fmt: skip
    if config.registrar is None:
        print("no [sip] registrar is configured: voipalert calls targets directly")
        return 1
    outcome: asyncio.Queue[RegistrationStatus] = asyncio.Queue()

    def on_event(event: SipEvent) -> None:
        if isinstance(event, RegistrationChanged):
            outcome.put_nowait(event.status)

    from voipalert.net.sip_dns import SipResolver
    from voipalert.net.sip_transport import SipEndpoint
    from voipalert.sip.agent import UserAgent
    from voipalert.sip.events import RegistrationChanged, RegistrationState

    agent = UserAgent(config, rng=secrets.SystemRandom())
    resolver = SipResolver(dns, ipv6=":" in bind[0])
    endpoint = SipEndpoint(agent, bind, on_event, tls=tls, resolver=resolver)
    try:
        await endpoint.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # The running service holds the port: a binding from another port tests the same
        # credentials; it is removed at the end (never with --keep: nothing would answer it).
        print(port_taken_note(bind, "registering"), file=sys.stderr)
        config, bind = beside_serve(config, bind)
        agent = UserAgent(config, rng=secrets.SystemRandom())
        endpoint = SipEndpoint(agent, bind, on_event, tls=tls, resolver=resolver)
        await endpoint.start()
        keep = False
    loop = asyncio.get_running_loop()
    try:
        endpoint.act(agent.register)
        wanted = {RegistrationState.REGISTERED, RegistrationState.FAILING}
        status = await _final(outcome, wanted, WAIT_SECONDS)
        if status is None or status.state is not RegistrationState.REGISTERED:
            detail = "no answer" if status is None else f"{status.last_status} {status.last_reason}"
            print(f"registration with {config.registrar} failed: {detail}")
            return 1
        granted = round((status.expires_at or loop.time()) - loop.time())
        print(
            f"registered sip:{config.user}@{config.domain} with {config.registrar}: "
            f"{status.last_status} {status.last_reason}, granted expiry {granted} s"
        )
        if not keep:
            endpoint.act(agent.unregister)
            await _final(outcome, {RegistrationState.UNREGISTERED}, 10.0)
        return 0
    finally:
        await endpoint.close()


async def _final(
    queue: asyncio.Queue[RegistrationStatus], states: set[RegistrationState], seconds: float
) -> RegistrationStatus | None:
    try:
        async with asyncio.timeout(seconds):
            while True:
                status = await queue.get()
                if status.state in states:
                    return status
    except TimeoutError:
        return None
