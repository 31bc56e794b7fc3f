"""The console's state on the HTTP app, and the session of a request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from voipalert.console.feed import ChangeFeed
from voipalert.console.security import SESSION_COOKIE, ConsoleConfig, LoginLimiter
from voipalert.ingest.app_keys import STORE
from voipalert.store.ports import ConsoleStore
from voipalert.store.users import Session, UserTables


@dataclass(frozen=True, slots=True)
class ConsoleState:
    users: UserTables
    config: ConsoleConfig
    limiter: LoginLimiter
    stopping: asyncio.Event  # set at shutdown: live-update streams end
    feed: ChangeFeed


CONSOLE: Final = web.AppKey("console", ConsoleState)


def console_store(request: web.Request) -> ConsoleStore:
    """The store as the pages use it: what ``store.ports.ConsoleStore`` names, no more."""
    return request.app[STORE]


_SESSION: Final = web.RequestKey("voipalert_console_session", object)
_NO_SESSION: Final = object()


async def session_of(request: web.Request) -> Session | None:
    """The request's live session (looked up once per request), or None."""
    cached = request.get(_SESSION)
    if cached is None:
        session_id = request.cookies.get(SESSION_COOKIE)
        found = None
        if session_id is not None and 0 < len(session_id) <= 128:
            found = await request.app[CONSOLE].users.session(session_id)
        request[_SESSION] = cached = found if found is not None else _NO_SESSION
    return cached if isinstance(cached, Session) else None
