"""``/invite/TOKEN``: the holder of an invitation link chooses the password of the account an
admin prepared (name and role), once; then they are logged in.

The link carries 32 random bytes (only their SHA-256 is stored) and expires after
``store.users.INVITATION_HOURS`` (72). The form is protected like the log-in form
(double-submit token, same-origin check, the per-address rate limit); the password follows
the CLI's rules.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Final

from aiohttp import web

from voipalert.console.keys import CONSOLE
from voipalert.console.passwords import hash_password, password_problem
from voipalert.console.render import render, see_other
from voipalert.console.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    new_login_token,
    same_origin,
    same_token,
    set_cookie,
)

TOKEN_MAX_CHARS: Final = 128


async def _form(
    request: web.Request, name: str, status: int = 200, error: str | None = None
) -> web.Response:
    token = new_login_token()
    response = await render(
        request, "invite.html", status, name=name, error=error, login_token=token,
        action=request.path,
    )  # fmt: skip
    set_cookie(response, request, LOGIN_COOKIE, token)
    return response


async def _gone(request: web.Request) -> web.Response:
    return await render(
        request, "error.html", 404, title="Not found",
        message="This invitation is unknown, used or expired; ask for a new one.",
    )  # fmt: skip


async def invitation_page(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"][:TOKEN_MAX_CHARS]
    found = await request.app[CONSOLE].users.invitation(token)
    if found is None:
        return await _gone(request)
    return await _form(request, found[0])


def _refusal(
    request: web.Request, login_token: object, password: object, again: object
) -> tuple[int, str] | None:
    """Why the form is refused (status, reason), or None."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not same_origin(request) or not cookie or not same_token(login_token, cookie):
        return 403, "The form has expired; reload the page and try again."
    limiter = request.app[CONSOLE].limiter
    if not limiter.allow(request.remote or "?", asyncio.get_running_loop().time()):
        return 429, "Too many attempts; try again later."
    if not isinstance(password, str) or password != again:
        return 422, "The passwords differ."
    problem = password_problem(password)
    return None if problem is None else (422, problem)


async def accept(request: web.Request) -> web.StreamResponse:
    state = request.app[CONSOLE]
    token = request.match_info["token"][:TOKEN_MAX_CHARS]
    form = await request.post()
    found = await state.users.invitation(token)
    if found is None:
        return await _gone(request)
    refused = _refusal(request, form.get("login_token"), form.get("password"), form.get("again"))
    if refused is not None:
        return await _form(request, found[0], *refused)
    password = str(form.get("password", ""))
    hashed = await asyncio.to_thread(hash_password, password, state.config.password_cost)
    user = await state.users.accept_invitation(token, hashed)
    if user is None:
        return await _gone(request)
    session_id, _ = await state.users.start_session(
        user, timedelta(hours=state.config.session_hours), request.remote,
        replaces=request.cookies.get(SESSION_COOKIE),
    )  # fmt: skip
    response = see_other("/")
    set_cookie(
        response, request, SESSION_COOKIE, session_id, int(state.config.session_hours * 3600)
    )
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response
