"""A webhook receiver on loopback for the status webhook tests: a real aiohttp server whose
answers are scripted (a status per request, or hanging), recording what it was sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HANG = -1  # a scripted "answer": never answer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers the scripted statuses in turn, then ``default``."""

    script: list[int] = field(default_factory=list)
    default: int = 200
    got: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    url: str = ""
    redirect_to: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            self.got.append(Received(dict(request.headers), body))
            self.arrived.set()
            status = self.script.pop(0) if self.script else self.default
            if status == HANG:
                await asyncio.Event().wait()
            if status == 302:
                raise web.HTTPFound(self.redirect_to)
            return web.Response(status=status, text="x" * 10_000 if status >= 400 else "ok")
        finally:
            self.in_flight -= 1

    def bodies(self) -> list[Any]:
        return [r.json for r in self.got]

    async def wait_for(self, count: int, seconds: float = 10.0) -> None:
        await self.wait_until(lambda: len(self.got) >= count, seconds)

    async def wait_until(self, done: Callable[[], bool], seconds: float = 10.0) -> None:
        """Until ``done()`` holds, looked at after each request that arrives."""
        async with asyncio.timeout(seconds):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    # A client that gives up closes the connection: its handler is cancelled with it, so
    # ``in_flight`` counts only requests a sender still waits for.
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()
