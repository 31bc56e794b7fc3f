"""Log-in and log-out.

The order of checks on a log-in: the form's double-submit token, the client address's rate
limit (429), the account's lockout, then the password (scrypt, in a worker thread). An
unknown name is checked against a dummy hash, so it takes as long to refuse as a wrong
password and the answer is the same. Every outcome is in the audit log under the name tried.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Final

from aiohttp import web

from voipalert.console.keys import CONSOLE, session_of
from voipalert.console.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from voipalert.console.render import render, see_other
from voipalert.console.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    new_login_token,
    same_origin,
    same_token,
    set_cookie,
)
from voipalert.ingest.app_keys import CLOCK
from voipalert.store.users import User

MAX_NAME_CHARS: Final = 64


# A path of this site and its query, in plain URL characters: no "//host", no backslash,
# no tab or newline (browsers drop those, so "/\t/evil.example" would become "//evil...").
_LOCAL_PATH: Final = re.compile(r"^/(?![/])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,500}$")


def _next(raw: str | None) -> str:
    """Where to go after the log-in: only a path of this site, else ``/``."""
    if raw and _LOCAL_PATH.match(raw):
        return raw
    return "/"


async def _form(
    request: web.Request, status: int = 200, error: str | None = None, name: str = ""
) -> web.Response:
    token = new_login_token()
    response = await render(
        request,
        "login.html",
        status,
        login_token=token,
        error=error,
        name=name,
        next=_next(request.query.get("next")),
    )
    set_cookie(response, request, LOGIN_COOKIE, token)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """The form, also to someone logged in (to log in as someone else: the session then
    changes, it is never reused)."""
    return await _form(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    state = request.app[CONSOLE]
    form = await request.post()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not same_origin(request) or not cookie or not same_token(form.get("login_token"), cookie):
        return await _form(request, 403, "The form has expired; reload the page and try again.")
    name = str(form.get("name", ""))[:MAX_NAME_CHARS].strip()
    password = str(form.get("password", ""))
    remote = request.remote
    loop_now = asyncio.get_running_loop().time()
    if not state.limiter.allow(remote or "?", loop_now):
        await state.users.login_refused(name or "?", remote, "rate_limited")
        return await _form(request, 429, "Too many attempts; try again later.", name)
    user = await state.users.get_user(name) if name else None
    now = request.app[CLOCK].now_utc()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        await state.users.login_refused(user.name, remote, "locked")
        return await _form(
            request, 403, "This account is locked for a while after repeated failures.", name
        )
    good = await asyncio.to_thread(
        verify_password, password, user.password_hash if user else DUMMY_HASH
    )
    if user is None or not good:
        if user is not None:
            await _failed(request, user)
        else:
            await state.users.login_refused(name or "?", remote, "unknown_user")
        return await _form(request, 401, "Wrong name or password.", name)
    if needs_rehash(user.password_hash, state.config.password_cost):
        hashed = await asyncio.to_thread(hash_password, password, state.config.password_cost)
        await state.users.rehash(user.id, hashed)
    session_id, _ = await state.users.start_session(
        user,
        timedelta(hours=state.config.session_hours),
        remote,
        replaces=request.cookies.get(SESSION_COOKIE),
    )
    response = see_other(_next(str(form.get("next", "/"))))
    set_cookie(
        response, request, SESSION_COOKIE, session_id, int(state.config.session_hours * 3600)
    )
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response


async def _failed(request: web.Request, user: User) -> None:
    state = request.app[CONSOLE]
    await state.users.login_failed(
        user,
        request.remote,
        state.config.lockout_failures,
        timedelta(seconds=state.config.lockout_seconds),
    )


async def logout(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session is not None and session_id is not None:
        await request.app[CONSOLE].users.end_session(session_id, session.user.name, request.remote)
    response = see_other("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
