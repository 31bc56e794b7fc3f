"""Who is calling the API, and may they.

Two ways in: ``Authorization: Bearer <token>``, or — on the trigger endpoints, for webhook
senders that can sign but cannot hold a bearer token — an HMAC-SHA256 signature of the body
in a signature header (``ingest.tokens``), over ``timestamp:body`` with the Unix time in a
timestamp header. Missing or wrong credentials are 401, a token without the needed scope
403. Every comparison of secrets is constant-time.

Signed requests and replay: by default a signature needs a timestamp
(``require_signature_timestamp``), which must be within ``signature_max_age_seconds`` of our
clock; every accepted signature is remembered for that window (``ingest.replay``), so the
same signed request sent again is refused (401, reason ``replayed``). The timestamp is parsed
with a bounded pattern: a 400-digit value is a 401, never an overflow.

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
from voipalert.ingest.json_http import read_body
from voipalert.ingest.replay import ReplayCache, Seen
from voipalert.ingest.tokens import (
    normalize_signature,
    parse_timestamp,
    signature_matches,
    token_digest,
)
from voipalert.store import ApiToken, Scope
from voipalert.store.api_reads import ApiReads, SigningKey
from voipalert.store.ports import TokenVerifier

CACHE_MAX_ENTRIES: Final = 4096
_BEARER: Final = re.compile(r"^Bearer +([\x21-\x7e]{1,256}) *$", re.IGNORECASE)
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="voipalert"'}
# What the request carries once it is known, for the rejected-trigger log line.
TOKEN_NAME_KEY: Final = web.RequestKey("voipalert_token_name", str)
REPLAY_KEY: Final = web.RequestKey("voipalert_replay_key", str)


def grants(scopes: frozenset[Scope], needed: Scope) -> bool:
    """``admin`` grants every scope."""
    return needed in scopes or Scope.ADMIN in scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's name is what the audit log records."""

    name: str
    scopes: frozenset[Scope]
    via: Literal["bearer", "signature"]


def _unauthorized(message: str, reason: str) -> ApiError:
    return ApiError(401, message, headers=_CHALLENGE, reason=reason)


class Authenticator:
    def __init__(
        self, store: TokenVerifier, tables: ApiReads, config: HttpConfig, clock: Clock
    ) -> None:
        self._store = store
        self._tables = tables
        self._config = config
        self._clock = clock
        # Keyed by the token's digest, so no token is kept in memory.
        self._by_hash: dict[str, tuple[float, ApiToken | None]] = {}
        self._live: tuple[float, list[SigningKey]] | None = None
        # A timestamp may be max_age early or late: a signature lives twice that long.
        self._replays = ReplayCache(2.0 * config.signature_max_age_seconds)

    async def _token(self, token: str) -> ApiToken | None:
        now = self._clock.monotonic()
        digest = token_digest(token)
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

    def _check_timestamp(self, timestamp: str | None) -> str | None:
        """The timestamp as the sender signed it, after checking it is recent."""
        if timestamp is None:
            if self._config.require_signature_timestamp:
                raise _unauthorized(
                    "the signature needs a timestamp header "
                    f"({', '.join(self._config.timestamp_headers)})",
                    "no_timestamp",
                )
            return None
        value = parse_timestamp(timestamp)
        if value is None:
            raise _unauthorized("the signature timestamp is not a Unix time", "bad_timestamp")
        age = abs(self._clock.now_utc().timestamp() - value)
        if age > self._config.signature_max_age_seconds:
            raise _unauthorized(
                "the signature timestamp is too old or in the future", "stale_timestamp"
            )
        return timestamp.strip()

    def _remember(self, request: web.Request, key: SigningKey, signature: str) -> None:
        replay_key = f"{key.name}:{signature}"
        seen = self._replays.check_and_add(replay_key, self._clock.monotonic())
        if seen is Seen.REPLAYED:
            raise _unauthorized("this signed request was already received", "replayed")
        if seen is Seen.FULL:
            raise ApiError(
                503,
                "too many signed requests in the signature window; retry",
                headers={"Retry-After": "5"},
                reason="replay_cache_full",
            )
        request[REPLAY_KEY] = replay_key

    def forget_signature(self, request: web.Request) -> None:
        """The request failed on our side: its sender may retry the same signed body."""
        replay_key = request.get(REPLAY_KEY)
        if replay_key is not None:
            self._replays.forget(replay_key)

    async def _by_signature(self, request: web.Request, raw_signature: str) -> Principal:
        stamp = self._check_timestamp(self._first_header(request, self._config.timestamp_headers))
        signature = normalize_signature(raw_signature)
        if signature is None:
            raise _unauthorized("the signature is not hex HMAC-SHA256", "bad_signature")
        body = await read_body(request, self._config.max_body_bytes)
        matched: SigningKey | None = None
        for key in await self._signing_keys():
            # Every key is tried, so the time taken does not tell which one matched.
            if signature_matches(key.secret, body, signature, stamp) and matched is None:
                matched = key
        if matched is None or not grants(matched.scopes, Scope.TRIGGER):
            raise _unauthorized("the body signature matches no token", "bad_signature")
        request[TOKEN_NAME_KEY] = matched.name
        self._remember(request, matched, signature)
        return Principal(matched.name, frozenset({Scope.TRIGGER}), "signature")

    async def authenticate(
        self, request: web.Request, needed: Scope, *, allow_signature: bool = False
    ) -> Principal:
        """The caller, or ``ApiError`` 401 (who are you?) / 403 (not allowed)."""
        header = request.headers.get("Authorization")
        if header is not None:
            match = _BEARER.match(header)
            if match is None:
                raise _unauthorized(
                    "the Authorization header must be 'Bearer <token>'", "bad_credentials"
                )
            record = await self._token(match.group(1))
            if record is None:
                raise _unauthorized("unknown or revoked token", "bad_token")
            request[TOKEN_NAME_KEY] = record.name
            principal = Principal(record.name, record.scopes, "bearer")
        else:
            signature = (
                self._first_header(request, self._config.signature_headers)
                if allow_signature
                else None
            )
            if signature is None:
                raise _unauthorized("send 'Authorization: Bearer <token>'", "no_credentials")
            principal = await self._by_signature(request, signature)
        if not grants(principal.scopes, needed):
            raise ApiError(
                403,
                f"token {principal.name!r} lacks the {needed.value!r} scope",
                reason="forbidden",
            )
        return principal
