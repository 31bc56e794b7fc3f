"""Every refused trigger leaves a trace: one WARNING line and a counter.

A mistyped credential in Alertmanager, a Grafana template that produces invalid JSON, a
replayed signature: each is a page that never rings. So every trigger request that ends in
a 4xx (and the few 503s of our own making) is logged with the reason, the peer address and
the token's name when it is known, and counted in ``voipalert_triggers_rejected_total``
by edge and reason. The log lines are capped (``ingest.log_budget``: a loop of bad
requests cannot fill the disk); the counter sees every one. Both labels come from fixed
sets (the reasons are the ``reason`` words of ``ApiError`` and HTTP status classes), so no
request can add a label value of its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from voipalert.ingest.app_keys import AUTH, CLOCK, METRICS, REJECTION_LOG
from voipalert.ingest.auth import TOKEN_NAME_KEY
from voipalert.ingest.http_errors import ApiError

log = logging.getLogger("voipalert.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# aiohttp's own errors raised while reading a trigger (a chunked body over the size cap).
_HTTP_REASONS: Final[Mapping[int, str]] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _note(request: web.Request, edge: str, status: int, reason: str, message: str) -> None:
    token = request.get(TOKEN_NAME_KEY)
    request.app[METRICS].rejected.labels(edge=edge, reason=reason).inc()
    allowed, left_out = request.app[REJECTION_LOG].take(request.app[CLOCK].monotonic())
    if not allowed:
        return
    log.warning(
        "trigger rejected (%s %s): %s%s",
        status,
        reason,
        message,
        f" ({left_out} more rejected triggers were not logged)" if left_out else "",
        extra={
            "edge": edge,
            "status": status,
            "reason": reason,
            "remote": request.remote or "-",
            "token_name": token or "-",
        },
    )


def trigger_endpoint(edge: str) -> Callable[[Handler], Handler]:
    """Wrap a trigger handler so that each refusal is logged and counted."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status >= 500:
                    request.app[AUTH].forget_signature(request)
                if exc.status < 500 or exc.reason == "replay_cache_full":
                    _note(request, edge, exc.status, exc.reason, exc.message)
                raise
            except web.HTTPException as exc:
                if exc.status >= 400:
                    reason = _HTTP_REASONS.get(exc.status, f"http_{exc.status // 100}xx")
                    _note(request, edge, exc.status, reason, exc.reason)
                raise
            except Exception:
                # A store failure (503) or a bug (500): the sender will retry, and must not
                # then be told its own signed request is a replay.
                request.app[AUTH].forget_signature(request)
                raise

        return wrapped

    return wrap
