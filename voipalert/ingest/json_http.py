"""JSON over HTTP for every handler: reading request bodies (size-capped, depth-checked)
and writing JSON replies."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Final, TypeVar

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from voipalert.ingest.http_errors import ApiError
from voipalert.ingest.schemas import ErrorDetail

MAX_JSON_DEPTH: Final = 32
_LONE_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _check(value: object, depth: int) -> None:
    # SQLite's JSON functions stop at depth 1000 and refuse NaN; a str with a lone surrogate
    # cannot be stored as TEXT at all. All three are refused here, at the edge.
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            raise ValueError("a string holds an unpaired UTF-16 surrogate")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number is out of range")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def parse_json(body: bytes) -> object:
    """The body as JSON, or ``ApiError(400)`` saying why not."""
    if not body.strip():
        raise ApiError(400, "the body is empty; send a JSON document", code="invalid_json")
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        _check(value, 0)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    return value


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, refusing early (413) when Content-Length announces too much. A client
    that hangs up half-way, or sends a broken chunked encoding, is a 400 with one log line
    (``ingest.rejections``), not a traceback per connection."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, f"the body is larger than {max_bytes} bytes", reason="too_large")
    try:
        return await request.read()
    except HttpProcessingError:
        raise ApiError(
            400, "the body's transfer encoding is broken", reason="bad_framing"
        ) from None
    except ConnectionError:
        whole = _received_whole(request.content)
        if whole is None:
            raise ApiError(
                400, "the client closed the connection mid-body", reason="aborted"
            ) from None
        return whole


def _received_whole(content: StreamReader) -> bytes | None:
    """The body, when every byte of it had arrived before the client hung up; else None.

    aiohttp's ``connection_lost`` marks the request's payload as failed whatever it holds
    (``web_protocol.RequestHandler.connection_lost`` → ``BaseRequest._cancel``), and every
    later read raises, even when the whole body is already buffered. A sender that writes a
    complete request and closes at once (a short client timeout, a script that does not
    wait for the answer, a half-close) would have its alert refused with a 400 nobody reads.
    The framing says the body is complete when the parser fed EOF (Content-Length reached,
    or the last chunk); if nothing was read out of the buffer yet, the buffer is the body
    (docs/security-http.md, "Bad input is a 4xx")."""
    buffered = tuple(getattr(content, "_buffer", ()))
    if not content.is_eof() or getattr(content, "_buffer_offset", 1) != 0:
        return None
    body = b"".join(buffered)
    return body if len(body) == content.total_bytes else None


def json_response(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=model.model_dump_json().encode(),
        content_type="application/json",
        headers=headers,
    )


def validation_error(exc: ValidationError) -> ApiError:
    details = [
        ErrorDetail(field=".".join(str(p) for p in err["loc"]), reason=err["msg"])
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return ApiError(422, "the body does not fit the schema", details=details)


async def read_model(request: web.Request, model: type[M], max_bytes: int) -> M:
    """The body validated as ``model`` (strict JSON types: "5" is not an integer)."""
    body = await read_body(request, max_bytes)
    parse_json(body)  # 400 for what is not JSON at all, or what SQLite could not store
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise validation_error(exc) from None
