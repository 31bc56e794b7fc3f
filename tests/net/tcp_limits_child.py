"""A small serve-like process for the connection-limit test: one SIP endpoint on TCP and an
aiohttp ``/healthz`` on the same event loop, as ``voipalert serve`` runs them.

Usage: ``python -m tests.net.tcp_limits_child SIP_PORT HTTP_PORT IDLE_TIMEOUT [unlimited]``.
Prints one JSON line when ready; exits on SIGTERM. ``unlimited`` sets caps far above the
descriptor limit: the control that shows what the attack does without them.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import signal
import sys

from aiohttp import web

from voipalert.net.sip_transport import ConnectionLimits, SipEndpoint
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig


async def main(sip_port: int, http_port: int, idle: float, unlimited: bool) -> None:
    config = UAConfig(
        user="voipalert", domain="127.0.0.1", local_host="127.0.0.1", local_port=sip_port,
        transport="tcp", unsolicited_per_second=1000.0,
    )  # fmt: skip
    agent = UserAgent(config, rng=random.Random())
    big = 10**6
    limits = (
        ConnectionLimits(idle_timeout=big, per_peer=big, total=big)
        if unlimited
        else ConnectionLimits(idle_timeout=idle)
    )
    endpoint = SipEndpoint(agent, ("127.0.0.1", sip_port), lambda _: None, limits=limits)
    await endpoint.start()
    if unlimited:
        endpoint.max_inbound = big  # not even the descriptor budget

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "inbound": endpoint.inbound_connections,
                "max_inbound": endpoint.max_inbound,
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "stats": dict(endpoint.stats),
            }
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", http_port)
    await site.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"ready": True, "max_inbound": endpoint.max_inbound}), flush=True)
    await stop.wait()
    await endpoint.close()
    await runner.cleanup()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(int(args[0]), int(args[1]), float(args[2]), args[3:] == ["unlimited"]))
