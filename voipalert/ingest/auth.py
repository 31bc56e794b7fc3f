"""Who is calling the API, and may they.

Two ways in: ``Authorization: Bearer <token>``, or — on the trigger endpoints, for webhook
senders that can sign but cannot hold a bearer token — an HMAC-SHA256 signature of the body
in a signature header (``ingest.tokens``), optionally over ``timestamp:body`` with the Unix
time in a timestamp header, which must then be recent. Missing or wrong credentials are
401, a token without the needed scope 403. Every comparison of secrets is constant-time.

Token lookups are cached for ``token_cache_seconds`` (a revoked token stops working within
that time), so that each request does not cost a database transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from voipalert.clock import Clock
from voipalert.ingest.config import HttpConfig
from voipalert.ingest.http_errors import ApiError
from voipalert.ingest.http_io import read_body
from voipalert.ingest.tokens import signature_matches, signing_secret
from voipalert.store import ApiToken, Scope, Store
from voipalert.store.api_tables import ApiTables, SigningKey

CACHE_MAX_ENTRIES: Final = 4096
_BEARER: Final = re.compile(r"^Bearer +([\x21-\x7e]{1,256}) *$", re.IGNORECASE)
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="voipalert"'}


def grants(scopes: frozenset[Scope], needed: Scope) -> bool:
    """``admin`` grants every scope."""
    return needed in scopes or Scope.ADMIN in scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's name is what the audit log records."""

    name: str
    scopes: frozenset[Scope]
    via: Literal["bearer", "signature"]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers=_CHALLENGE)


class Authenticator:
    def __init__(self, store: Store, tables: ApiTables, config: HttpConfig, clock: Clock) -> None:
        self._store = store
        self._tables = tables
        self._config = config
        self._clock = clock
        # Keyed by the token's digest, so no token is kept in memory.
        self._by_hash: dict[str, tuple[float, ApiToken | None]] = {}
        self._live: tuple[float, list[SigningKey]] | None = None

    async def _token(self, token: str) -> ApiToken | None:
        now = self._clock.monotonic()
        digest = signing_secret(token)
        cached = self._by_hash.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._store.verify_api_token(token)
        if len(self._by_hash) >= CACHE_MAX_ENTRIES:
            self._by_hash.clear()  # bounded: random tokens cannot grow it without limit
        self._by_hash[digest] = (now + self._config.token_cache_seconds, record)
        return record

    async def _signing_keys(self) -> list[SigningKey]:
        now = self._clock.monotonic()
        if self._live is None or self._live[0] <= now:
            tokens = await self._tables.signing_keys()
            self._live = (now + self._config.token_cache_seconds, tokens)
        return self._live[1]

    def _first_header(self, request: web.Request, names: Iterable[str]) -> str | None:
        return next((request.headers[n] for n in names if n in request.headers), None)

    def _check_timestamp(self, timestamp: str | None) -> None:
        if timestamp is None:
            if self._config.require_signature_timestamp:
                raise _unauthorized("the signature needs a timestamp header")
            return
        if not timestamp.isascii() or not timestamp.strip().isdigit():
            raise _unauthorized("the signature timestamp is not a Unix time")
        age = abs(self._clock.now_utc().timestamp() - int(timestamp))
        if age > self._config.signature_max_age_seconds:
            raise _unauthorized("the signature timestamp is too old or in the future")

    async def _by_signature(self, request: web.Request, signature: str) -> Principal:
        timestamp = self._first_header(request, self._config.timestamp_headers)
        self._check_timestamp(timestamp)
        body = await read_body(request, self._config.max_body_bytes)
        stamp = timestamp.strip() if timestamp is not None else None
        matched: SigningKey | None = None
        for key in await self._signing_keys():
            # Every key is tried, so the time taken does not tell which one matched.
            if signature_matches(key.secret, body, signature, stamp) and matched is None:
                matched = key
        if matched is not None and grants(matched.scopes, Scope.TRIGGER):
            return Principal(matched.name, frozenset({Scope.TRIGGER}), "signature")
        raise _unauthorized("the body signature matches no token")

    async def authenticate(
        self, request: web.Request, needed: Scope, *, allow_signature: bool = False
    ) -> Principal:
        """The caller, or ``ApiError`` 401 (who are you?) / 403 (not allowed)."""
        header = request.headers.get("Authorization")
        if header is not None:
            match = _BEARER.match(header)
            if match is None:
                raise _unauthorized("the Authorization header must be 'Bearer <token>'")
            record = await self._token(match.group(1))
            if record is None:
                raise _unauthorized("unknown or revoked token")
            principal = Principal(record.name, record.scopes, "bearer")
        else:
            signature = (
                self._first_header(request, self._config.signature_headers)
                if allow_signature
                else None
            )
            if signature is None:
                raise _unauthorized("send 'Authorization: Bearer <token>'")
            principal = await self._by_signature(request, signature)
        if not grants(principal.scopes, needed):
            raise ApiError(403, f"token {principal.name!r} lacks the {needed.value!r} scope")
        return principal
