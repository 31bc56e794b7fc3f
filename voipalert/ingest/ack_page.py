"""The acknowledgement link of an e-mail: ``GET /ack/{token}`` shows a page with one
button, and only its ``POST`` acknowledges, so mail scanners and link previews that fetch
every URL change nothing (docs/text-channels.md). The token is its own credential: signed
with the server key, for one alert, expiring and single-use (store/ack_links.py).

Pages are small fixed HTML with no script; the only value from the request that appears in
them is the alert number, an integer the token's signature vouches for.
"""

from __future__ import annotations

import html
from typing import Final

from aiohttp import web

from voipalert.ingest.app_keys import STORE, WAKE
from voipalert.store.ack_links import MAX_TOKEN_CHARS

PATH: Final = "/ack/{token}"
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak in a Referer
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
}
_WHY: Final = {
    "invalid": "This link is not valid.",
    "expired": "This link has expired.",
    "used": "This link has already been used.",
    "already_handled": "The alert was already acknowledged or resolved.",
}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _refused(why: str) -> web.Response:
    # 404 for a link we never issued (or altered), 410 for one that expired or was used.
    status = 410 if why in ("expired", "used") else 404
    return _page("voipalert", f"<p>{_WHY.get(why, _WHY['invalid'])}</p>", status)


def _too_long(request: web.Request) -> web.Response | None:
    # No token is this long: answered without looking it up (and outside its schema).
    if len(request.match_info["token"]) > MAX_TOKEN_CHARS:
        return _page("voipalert", "<p>No such link.</p>", 404)
    return None


async def confirm_page(request: web.Request) -> web.Response:
    if (refused := _too_long(request)) is not None:
        return refused
    check, link = await request.app[STORE].check_ack_link(request.match_info["token"])
    if link is None or check != "ok":
        return _refused(check)
    return _page(
        f"Acknowledge alert #{link.alert_id}?",
        '<form method="post"><button type="submit">Acknowledge</button></form>',
    )


async def acknowledge(request: web.Request) -> web.Response:
    if (refused := _too_long(request)) is not None:
        return refused
    result, link = await request.app[STORE].use_ack_link(request.match_info["token"])
    if result == "acknowledged" and link is not None:
        request.app[WAKE]()
        return _page(f"Alert #{link.alert_id} acknowledged", "<p>Thank you.</p>")
    if result == "already_handled" and link is not None:
        return _page(f"Alert #{link.alert_id}", f"<p>{_WHY[result]}</p>")
    return _refused(result)


def add_ack_link_routes(app: web.Application) -> None:
    app.add_routes([web.get(PATH, confirm_page, allow_head=False), web.post(PATH, acknowledge)])
