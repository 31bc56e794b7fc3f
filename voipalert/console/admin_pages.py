"""``/admin/users`` (admins): the console's accounts, as ``voipalert user`` manages them.

Adding a user or resetting a password makes up a password and shows it once on the page
(the admin hands it over); only its scrypt hash is stored. Changes are in the audit log under
the admin's name. An admin cannot remove or demote their own account here (so the last admin
cannot lock everyone out by mistake); the CLI still can.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from aiohttp import web

from voipalert.console.keys import CONSOLE, session_of
from voipalert.console.passwords import hash_password
from voipalert.console.render import render
from voipalert.store.users import INVITATION_HOURS, USER_NAME, Role


async def _page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    users = await request.app[CONSOLE].users.list_users()
    now = request.app[CONSOLE].users.now()
    values: dict[str, Any] = {
        "users": [(u, u.locked_until is not None and u.locked_until > now) for u in users],
        "roles": [r.label for r in Role],
        "message": None,
        "error": None,
        "secret": None,
        "invitation": None,
    }
    values.update(extra)
    return await render(request, "admin_users.html", status, **values)


async def users(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _valid_name(name: str) -> bool:
    return USER_NAME.match(name) is not None


async def change_user(request: web.Request) -> web.StreamResponse:
    """One form, several buttons: ``action`` is add, role, password or remove."""
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    action = str(form.get("action", ""))
    name = str(form.get("name", "")).strip()
    role_text = str(form.get("role", "viewer"))
    if (
        action not in ("add", "invite", "password", "role", "remove")
        or role_text not in {r.label for r in Role}
        or not _valid_name(name)
    ):
        return await _page(request, 422, error="Check the name and the role.")
    if name == session.user.name and action in ("role", "remove"):
        return await _page(request, 409, error="You cannot remove or demote yourself here.")
    if action in ("add", "password"):
        return await _new_password(request, action, name, Role.parse(role_text))
    if action == "invite":
        return await _invite(request, name, Role.parse(role_text))
    tables, me = request.app[CONSOLE].users, session.user.name
    if action == "role":
        done = await tables.set_role(name, Role.parse(role_text), me)
    else:
        done = await tables.remove_user(name, me)
    if not done:
        return await _page(request, 409, error="No such user.")
    return await _page(request, message="Saved.")


async def _invite(request: web.Request, name: str, role: Role) -> web.Response:
    """A one-time link for ``name`` to choose their own password; shown once."""
    session = await session_of(request)
    assert session is not None
    lifetime = timedelta(hours=INVITATION_HOURS)
    token = await request.app[CONSOLE].users.invite(name, role, lifetime, session.user.name)
    if token is None:
        return await _page(request, 409, error="That name is taken.")
    link = f"{request.scheme}://{request.host}/invite/{token}"
    return await _page(request, invitation=(name, link))


async def _new_password(request: web.Request, action: str, name: str, role: Role) -> web.Response:
    """Add ``name``, or give them a new password; the password is shown once."""
    session = await session_of(request)
    assert session is not None
    tables, me = request.app[CONSOLE].users, session.user.name
    secret = secrets.token_urlsafe(12)
    hashed = await asyncio.to_thread(hash_password, secret)
    if action == "add":
        done = await tables.add_user(name, role, hashed, me) is not None
    else:
        done = await tables.set_password(name, hashed, me)
    if not done:
        problem = "That name is taken." if action == "add" else "No such user."
        return await _page(request, 409, error=problem)
    return await _page(request, secret=(name, secret))
