"""``/admin`` (admins): whether the service is ready (database, SIP registration, as
``/readyz`` says), the API tokens (create, shown once; revoke), and the effective settings
with secrets masked (as ``voipalert config check`` prints them).

Token changes are in the audit log under the admin's name. A token created here has the
same secret and signing secret as one made by ``voipalert token create``: shown on this
page once, then only its SHA-256 is kept.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from voipalert.console.keys import CONSOLE, console_store, session_of
from voipalert.console.render import render
from voipalert.ingest.app_keys import API_READS, SIP_STATE
from voipalert.ingest.health import check_readiness
from voipalert.ingest.tokens import TOKEN_NAME
from voipalert.store import Scope, StoreError

SETTINGS_VIEW: Final = web.AppKey("console_settings_view", str)
# (target, message, language, user) -> the call's report; ValueError says why not.
TestCall = Callable[[str, str, str, str], Awaitable[dict[str, object]]]
TEST_CALL: Final[web.AppKey[TestCall]] = web.AppKey("console_test_call")
MAX_TARGET_CHARS: Final = 256
MAX_MESSAGE_CHARS: Final = 600


async def _page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    app = request.app
    readiness = await check_readiness(app[API_READS], app[SIP_STATE])
    values: dict[str, Any] = {
        "readiness": readiness,
        "tokens": await app[API_READS].list_tokens(),
        "scopes": [s.value for s in Scope],
        "settings_text": app.get(SETTINGS_VIEW),
        "can_test_call": TEST_CALL in app,
        "report": None,
        "call_form": {},
        "created": None,
        "error": None,
        "message": None,
    }
    values.update(extra)
    return await render(request, "admin.html", status, **values)


async def status(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def tokens(request: web.Request) -> web.StreamResponse:
    """``action``: create (name, scopes) or revoke (name)."""
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    name = str(form.get("name", "")).strip()
    if TOKEN_NAME.match(name) is None:
        return await _page(request, 422, error="Use 1-64 letters, digits, '.', '_' or '-'.")
    if form.get("action") == "revoke":
        if not await console_store(request).revoke_api_token(name, actor=session.user.name):
            return await _page(request, 409, error="No such token.")
        return await _page(request, message="Saved.")
    scopes = frozenset(Scope(s) for s in form.getall("scope", []) if s in set(Scope))
    if not scopes:
        return await _page(request, 422, error="Pick at least one scope.")
    return await _create(request, name, scopes, session.user.name)


async def _create(
    request: web.Request, name: str, scopes: frozenset[Scope], actor: str
) -> web.Response:
    store = console_store(request)
    if any(t.name == name for t in await request.app[API_READS].list_tokens()):
        return await _page(request, 409, error="That name is taken.")
    try:
        _, secret = await store.create_api_token(name, scopes, actor=actor)
    except StoreError as exc:
        if isinstance(exc.__cause__, sqlite3.IntegrityError):  # created meanwhile
            return await _page(request, 409, error="That name is taken.")
        raise
    return await _page(request, created=(name, secret, await store.signing_secret(name)))


async def test_call(request: web.Request) -> web.StreamResponse:
    """The ``voipalert call`` path from the browser: the running service places the call
    (with the phone and voice alerts use) and the page shows its report once it ended."""
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    entry = {
        "target": str(form.get("target", "")).strip()[:MAX_TARGET_CHARS],
        "message": str(form.get("message", "")).strip()[:MAX_MESSAGE_CHARS],
        "lang": str(form.get("lang", "en")),
    }
    place = request.app.get(TEST_CALL)
    if place is None:
        return await _page(request, 503, error="Test calls need voipalert serve.")
    if not entry["target"] or not entry["message"]:
        return await _page(request, 422, error="Give a target and a message.", call_form=entry)
    try:
        report = await place(entry["target"], entry["message"], entry["lang"], session.user.name)
    except ValueError as exc:
        return await _page(request, 409, error=str(exc), call_form=entry)
    await request.app[CONSOLE].users.audit(
        session.user.name, "console.test_call",
        {"target": entry["target"], "outcome": report.get("outcome")},
    )  # fmt: skip
    return await _page(request, report=sorted(report.items()), call_form=entry)


def settings_text(masked: dict[str, Any]) -> str:
    """The masked settings as the admin page shows them."""
    return json.dumps(masked, indent=2, default=str, sort_keys=True)
