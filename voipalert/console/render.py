"""Templates (Jinja2, shipped in the package) and what every page needs: the user, the CSRF
token, the language.

Autoescape is on for every template, so text from alerts (summary, labels, payload: all
chosen by whoever sends the webhook) is always shown as text, never as markup. No template
marks anything ``|safe``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from voipalert.console.i18n import LANGUAGES, Translator, negotiate
from voipalert.console.keys import session_of
from voipalert.console.security import LANG_COOKIE
from voipalert.store.users import Session


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("voipalert.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = format_time
    env.filters["in_zone"] = format_in_zone
    return env


def compile_templates() -> None:
    """Compile every template now (at start-up): compiling one is tens of milliseconds of
    CPU that would otherwise stall the event loop at its first use."""
    env = environment()
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)


def format_time(instant: datetime | None) -> str:
    if instant is None:
        return ""
    return instant.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def format_in_zone(instant: datetime | None, zone: str) -> str:
    """A time as the schedule's people read it (its own zone)."""
    if instant is None:
        return ""
    return instant.astimezone(ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M %Z")


def format_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d}"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def language(request: web.Request, session: Session | None) -> str:
    chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    if session is not None and session.user.language in LANGUAGES:
        return str(session.user.language)
    return negotiate(request.headers.get("Accept-Language"))


async def page_context(request: web.Request) -> dict[str, Any]:
    session = await session_of(request)
    lang = language(request, session)
    return {
        "_": Translator(lang),
        "lang": lang,
        "user": session.user if session else None,
        "csrf": session.csrf_token if session else "",
        "path": request.path,
    }


def render_text(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(context)


async def render(
    request: web.Request, template: str, status: int = 200, **values: Any
) -> web.Response:
    context = await page_context(request)
    context.update(values)
    return web.Response(
        status=status,
        text=render_text(template, context),
        content_type="text/html",
        charset="utf-8",
    )


async def error_page_async(
    request: web.Request, status: int, title: str, message: str
) -> web.Response:
    return await render(request, "error.html", status, title=title, message=message)


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """A plain page for refusals that happen before a handler (no lookups needed)."""
    lang = negotiate(request.headers.get("Accept-Language"))
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        lang = str(chosen)
    context = {"_": Translator(lang), "lang": lang, "user": None, "csrf": "", "path": ""}
    context |= {"title": title, "message": message}
    return web.Response(
        status=status,
        text=render_text("error.html", context),
        content_type="text/html",
        charset="utf-8",
    )


def see_other(location: str) -> web.Response:
    """303 to ``location`` (after a form: the browser then GETs it)."""
    return web.Response(status=303, headers={"Location": location})
