"""The console's routes, each with the least role that may use it, and the guard that
enforces it (docs/console.md has the table).

Every handler is wrapped by ``_guarded``: it finds the session from the cookie, sends a
browser without one to the log-in page, answers 403 to a role below the route's, and checks
the CSRF token and the ``Origin`` of every POST before the handler runs. Public routes (the
log-in page, the stylesheet and script) have role ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from voipalert.console import (
    admin_pages,
    admin_status,
    alert_pages,
    invite,
    login,
    mass_pages,
    oncall_pages,
    prompts,
    rota_pages,
)
from voipalert.console.feed import ChangeFeed, run_feed
from voipalert.console.keys import CONSOLE, ConsoleState, session_of
from voipalert.console.render import compile_templates, error_page, see_other
from voipalert.console.security import (
    LANG_COOKIE,
    PAGE_HEADERS,
    ConsoleConfig,
    LoginLimiter,
    same_origin,
    same_token,
    set_cookie,
)
from voipalert.ingest.app_keys import CLOCK, STORE
from voipalert.store.users import Role, UserTables

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC: Final = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: Role | None  # None: anyone, logged in or not


_ALERT: Final = "/alerts/{id:[0-9]{1,18}}"
ROUTES: Final = (
    Route("GET", "/login", login.login_page, None),
    Route("POST", "/login", login.login_submit, None),
    Route("POST", "/logout", login.logout, Role.VIEWER),
    Route("GET", "/invite/{token:[A-Za-z0-9_-]{1,128}}", invite.invitation_page, None),
    Route("POST", "/invite/{token:[A-Za-z0-9_-]{1,128}}", invite.accept, None),
    Route("GET", "/", alert_pages.board, Role.VIEWER),
    Route("GET", "/events", alert_pages.events, Role.VIEWER),
    Route("GET", _ALERT, alert_pages.alert_page, Role.VIEWER),
    Route("GET", f"{_ALERT}/prompt.wav", prompts.alert_prompt, Role.VIEWER),
    Route("GET", f"{_ALERT}/{{action:ack|resolve}}", alert_pages.confirm, Role.RESPONDER),
    Route("POST", f"{_ALERT}/{{action:ack|resolve}}", alert_pages.act, Role.RESPONDER),
    Route("GET", "/oncall", oncall_pages.oncall, Role.VIEWER),
    Route("POST", "/oncall/overrides", oncall_pages.add_override, Role.RESPONDER),
    Route("POST", "/oncall/overrides/remove", oncall_pages.remove_override, Role.RESPONDER),
    Route("GET", "/mass", mass_pages.launcher, Role.MANAGER),
    Route("POST", "/mass", mass_pages.launch, Role.MANAGER),
    Route("GET", "/mass/prompt.wav", prompts.mass_prompt, Role.MANAGER),
    Route("GET", "/rota", rota_pages.editor, Role.MANAGER),
    Route("POST", "/rota/preview", rota_pages.preview, Role.MANAGER),
    Route("POST", "/rota/apply", rota_pages.apply, Role.MANAGER),
    Route("GET", "/admin", admin_status.status, Role.ADMIN),
    Route("POST", "/admin/tokens", admin_status.tokens, Role.ADMIN),
    Route("POST", "/admin/test-call", admin_status.test_call, Role.ADMIN),
    Route("GET", "/admin/users", admin_pages.users, Role.ADMIN),
    Route("POST", "/admin/users", admin_pages.change_user, Role.ADMIN),
)


def _guarded(route: Route) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[CONSOLE]
        session = await session_of(request)
        if route.role is not None:
            if session is None:
                if route.path == "/events":
                    return web.Response(status=401, text="log in first")
                target = quote(request.path_qs if request.method == "GET" else "/", safe="")
                return see_other(f"/login?next={target}")
            if session.user.role < route.role:
                return error_page(request, 403, "Forbidden", "Your role does not allow this.")
            if request.method == "POST":
                form = await request.post()
                if not same_origin(request) or not same_token(form.get("csrf"), session.csrf_token):
                    return error_page(
                        request, 403, "Forbidden",
                        "The form has expired; reload the page and try again.",
                    )  # fmt: skip
        chosen = request.query.get("lang")
        if chosen in ("en", "fr") and session is not None:
            await state.users.set_language(session.user.id, chosen)
        response = await route.handler(request)
        if chosen in ("en", "fr") and not response.prepared:  # (a stream is sent already)
            set_cookie(response, request, LANG_COOKIE, chosen, max_age=365 * 86400)
        return response

    return handler


@web.middleware
async def _html_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser asking for a page that does not exist gets a page saying so (the API's
    clients keep their JSON error: this only answers GETs that accept HTML, outside
    ``/api/``)."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        accepts_html = "text/html" in request.headers.get("Accept", "")
        if request.method != "GET" or request.path.startswith("/api/") or not accepts_html:
            raise
        return error_page(request, 404, "Not found", "Not found")


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """The console's security headers, on every response outside the API."""
    if not request.path.startswith("/api/"):
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)


async def _stop_streams(app: web.Application) -> None:
    app[CONSOLE].stopping.set()
    app[CONSOLE].feed.close()


def _feed(app: web.Application) -> AsyncIterator[None]:
    return run_feed(app[CONSOLE].feed)


def add_console(
    app: web.Application,
    config: ConsoleConfig | None = None,
    settings: dict[str, Any] | None = None,
    test_call: admin_status.TestCall | None = None,
    speech: prompts.PromptSpeech | None = None,
) -> None:
    """Add the console's pages to the HTTP app built by ``ingest.webhook.build_app`` (whose
    store, clock and engine wake it uses). ``settings``: the effective settings with secrets
    masked, for the admin page; ``test_call`` places the admin page's test calls (the
    composition root's, which holds the phone); ``speech`` renders what calls say, to play
    it in the browser."""
    config = config or ConsoleConfig()
    if settings is not None:
        app[admin_status.SETTINGS_VIEW] = admin_status.settings_text(settings)
    if test_call is not None:
        app[admin_status.TEST_CALL] = test_call
    if speech is not None:
        app[prompts.SPEECH] = speech
    compile_templates()
    store, clock = app[STORE], app[CLOCK]
    users = UserTables(store, clock)
    app[CONSOLE] = ConsoleState(
        users=users,
        config=config,
        limiter=LoginLimiter(config.login_attempts, config.login_window_seconds),
        stopping=asyncio.Event(),
        feed=ChangeFeed(users, config.events_poll_seconds),
    )
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _guarded(route))
    app.router.add_static("/static", STATIC, append_version=False)
    app.on_response_prepare.append(_headers)
    app.middlewares.append(_html_not_found)
    app.on_shutdown.append(_stop_streams)
    app.cleanup_ctx.append(_feed)


__all__ = ["ROUTES", "Route", "add_console"]
