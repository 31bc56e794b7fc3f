"""Every error the HTTP API returns is a JSON ``ErrorOut``: the middleware turns aiohttp's
own errors (404, 405, 413) and ours (``ApiError``) into one, and an unexpected exception into
a 500 that is logged with its traceback but tells the client nothing about the inside."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from aiohttp import web

from voipalert.ingest.schemas import ErrorDetail, ErrorOut
from voipalert.store import StoreError
from voipalert.store.errors import DatabaseUnusable

log = logging.getLogger("voipalert.http")

_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
    500: "internal_error",
    503: "unavailable",
}
# aiohttp sets these on its HTTP errors; we carry them over to the JSON reply.
_KEPT_HEADERS: Final = ("Allow", "WWW-Authenticate", "Retry-After")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Raised by handlers; rendered as ``ErrorOut`` with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        # A finer, still bounded, word for logs and the rejected-trigger counter.
        self.reason = reason or self.code
        self.message = message
        self.details = tuple(details)
        self.headers = dict(headers or {})


def json_error(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = ErrorOut(error=code, message=message, details=list(details))
    return web.Response(
        status=status,
        body=body.model_dump_json().encode(),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
        code = _CODES.get(exc.status, "error")
        return json_error(exc.status, code, exc.reason, headers=headers)
    except ConnectionError as exc:
        # The peer went away while we read or wrote: nothing to answer, nothing to debug.
        log.info("client gone during %s %s: %s", request.method, request.path, exc)
        return json_error(400, "bad_request", "connection lost")
    except StoreError as exc:
        if isinstance(exc, DatabaseUnusable):
            # No database to reach (a failover under way, docs/database-failover.md): one
            # line per refused request; a traceback would say nothing more.
            log.warning("503 to %s %s: %s", request.method, request.path, exc)
        else:
            log.exception("store failure in %s %s", request.method, request.path)
        return json_error(
            503, "unavailable", "the database is unavailable; retry", headers={"Retry-After": "5"}
        )
    except Exception:
        # CancelledError is a BaseException: it passes through untouched, as it must.
        log.exception("unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal_error", "internal error; see the server log")
