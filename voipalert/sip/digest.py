"""Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760; RFC 2617/2069 forms).

Public API:

* ``parse_challenges(value) -> tuple[AuthField, ...]`` — one WWW-Authenticate or
  Proxy-Authenticate value, which may hold several challenges (quoted strings with escapes,
  commas inside quotes, parameter names and algorithm tokens in any case).
* ``parse_credentials(value) -> AuthField`` — an Authorization / Proxy-Authorization value.
* ``AuthField(scheme, params)`` with ``get(name)``, ``realm``, ``nonce``, ``opaque``,
  ``algorithm`` (upper case, ``MD5`` when absent), ``qop_options``, ``stale``.
* ``DigestCredentials(auth_username, password)`` — the auth username is separate from the
  From user (trunks); the password is kept out of ``repr`` and only ever enters a hash.
* ``choose_challenge(challenges)`` — the first challenge, in the server's order, that we can
  answer: SHA-512-256, SHA-256 or MD5, each also ``-sess`` (RFC 8760 §2.4), with no qop or a
  qop list containing ``auth``.
* ``build_authorization(challenge, credentials, *, method, uri, cnonce, nc)`` — the header
  value; ``uri`` must be the Request-URI of the request being authorized (RFC 3261 §22.4).
* ``authorization_headers(response, credentials, *, method, uri, rng, counter)`` — the
  ``(name, value)`` pairs to add when retrying after a 401 (``Authorization``) or 407
  (``Proxy-Authorization``), one per realm; ``NonceCounter`` numbers the uses of a nonce
  (``nc``); the cnonce comes from the caller's ``rng``.
* ``is_stale(response)`` — a challenge says ``stale=true``: retry with the new nonce
  without counting it as a failure (RFC 7616 §3.3).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.grammar import Scanner, check_text, is_control, quote
from voipalert.sip.message import Response
from voipalert.sip.uri import Uri

_HASHES: Final = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
SUPPORTED_ALGORITHMS: Final = tuple(
    name for base in ("SHA-512-256", "SHA-256", "MD5") for name in (base, f"{base}-SESS")
)
_CHALLENGE_TO_CREDENTIALS: Final = {
    "www-authenticate": "Authorization",
    "proxy-authenticate": "Proxy-Authorization",
}
_VALUE_CHARS: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset(',";')
_MAX_NONCES: Final = 32


@dataclass(frozen=True, slots=True)
class AuthField:
    """One challenge or credentials: a scheme and its parameters (names in lower case,
    values unquoted)."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.params if key == wanted), None)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def realm(self) -> str | None:
        return self.get("realm")

    @property
    def nonce(self) -> str | None:
        return self.get("nonce")

    @property
    def opaque(self) -> str | None:
        return self.get("opaque")

    @property
    def algorithm(self) -> str:
        return (self.get("algorithm") or "MD5").upper()

    @property
    def qop_options(self) -> tuple[str, ...]:
        value = self.get("qop")
        if value is None:
            return ()
        return tuple(item.strip(" \t").lower() for item in value.split(",") if item.strip())

    @property
    def stale(self) -> bool:
        return (self.get("stale") or "").lower() == "true"


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """Who we authenticate as. ``auth_username`` may differ from the From user."""

    auth_username: str
    password: str = field(repr=False)


class NonceCounter:
    """Counts each use of a nonce for ``nc`` (RFC 7616 §3.4); remembers a few nonces."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def next(self, nonce: str) -> int:
        count = self._counts.pop(nonce, 0) + 1
        self._counts[nonce] = count
        while len(self._counts) > _MAX_NONCES:
            del self._counts[next(iter(self._counts))]
        return count


def parse_challenges(value: str) -> tuple[AuthField, ...]:
    """Every challenge in one WWW-Authenticate / Proxy-Authenticate header value."""
    scanner = Scanner(value, "challenge")
    fields: list[tuple[str, list[tuple[str, str]]]] = []
    while True:
        scanner.skip_ws()
        if scanner.at_end():
            break
        if scanner.peek() == ",":
            scanner.pos += 1
            continue
        name = scanner.token("auth scheme or parameter")
        scanner.skip_ws()
        if scanner.peek() != "=":
            fields.append((name, []))
            continue
        if not fields:
            raise scanner.error("parameter before any auth scheme")
        scanner.pos += 1
        fields[-1][1].append((name.lower(), _param_value(scanner)))
    if not fields:
        raise RemoteProtocolError("challenge: empty header value")
    return tuple(AuthField(scheme, tuple(params)) for scheme, params in fields)


def parse_credentials(value: str) -> AuthField:
    fields = parse_challenges(value)
    if len(fields) != 1:
        raise RemoteProtocolError(f"credentials: expected one scheme, got {len(fields)}")
    return fields[0]


def _param_value(scanner: Scanner) -> str:
    scanner.skip_ws()
    if scanner.peek() == '"':
        value = scanner.quoted_string()
        if any(is_control(ch) for ch in value):
            raise scanner.error("control character in a quoted value")
        return value
    value = scanner.take_while(_VALUE_CHARS)
    if not value:
        raise scanner.error("empty parameter value")
    return value


def _usable(challenge: AuthField) -> bool:
    qop = challenge.qop_options
    sess = challenge.algorithm.endswith("-SESS")
    return (
        challenge.is_digest
        and challenge.algorithm in SUPPORTED_ALGORITHMS
        and challenge.realm is not None
        and challenge.nonce is not None
        and ("auth" in qop if qop else not sess)
    )


def choose_challenge(challenges: Iterable[AuthField]) -> AuthField | None:
    """The first challenge we can answer, in the order the server listed them."""
    return next((c for c in challenges if _usable(c)), None)


def _hash(algorithm: str, text: str) -> str:
    name = _HASHES[algorithm.removesuffix("-SESS")]
    return hashlib.new(name, text.encode()).hexdigest()


def digest_response(
    challenge: AuthField,
    credentials: DigestCredentials,
    *,
    method: str,
    uri: str,
    cnonce: str,
    nc: int,
) -> str:
    """The ``response`` hex digest (RFC 7616 §3.4.1; the RFC 2069 form without qop)."""
    if not _usable(challenge):
        raise RemoteProtocolError(f"cannot answer {challenge.scheme} {challenge.algorithm}")
    algorithm, realm, nonce = challenge.algorithm, challenge.realm or "", challenge.nonce or ""
    ha1 = _hash(algorithm, f"{credentials.auth_username}:{realm}:{credentials.password}")
    if algorithm.endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if not challenge.qop_options:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")


def build_authorization(
    challenge: AuthField,
    credentials: DigestCredentials,
    *,
    method: str,
    uri: str | Uri,
    cnonce: str,
    nc: int,
) -> str:
    """An ``Authorization`` / ``Proxy-Authorization`` value answering ``challenge``."""
    uri_text = uri if isinstance(uri, str) else uri.format()
    check_text(uri_text, "digest uri")
    response = digest_response(
        challenge, credentials, method=method, uri=uri_text, cnonce=cnonce, nc=nc
    )
    parts = [
        f"username={quote(credentials.auth_username, 'digest username')}",
        f"realm={quote(challenge.realm or '', 'digest realm')}",
        f"nonce={quote(challenge.nonce or '', 'digest nonce')}",
        f"uri={quote(uri_text, 'digest uri')}",
        f"response={quote(response, 'digest response')}",
    ]
    if challenge.get("algorithm") is not None:
        parts.append(f"algorithm={challenge.algorithm}")
    if challenge.qop_options:
        parts.append(f"cnonce={quote(cnonce, 'digest cnonce')}")
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque, 'digest opaque')}")
    if challenge.qop_options:
        parts.extend(("qop=auth", f"nc={nc:08x}"))
    return "Digest " + ", ".join(parts)


def make_cnonce(rng: random.Random) -> str:
    """A 128-bit client nonce from the caller's RNG (pass ``secrets.SystemRandom()``)."""
    return f"{rng.getrandbits(128):032x}"


def _challenges_by_header(response: Response) -> list[tuple[str, AuthField]]:
    found: list[tuple[str, AuthField]] = []
    for name, value in response.headers:
        credentials_name = _CHALLENGE_TO_CREDENTIALS.get(name.lower())
        if credentials_name is not None:
            found.extend((credentials_name, c) for c in parse_challenges(value))
    return found


def authorization_headers(
    response: Response,
    credentials: DigestCredentials,
    *,
    method: str,
    uri: str | Uri,
    rng: random.Random,
    counter: NonceCounter,
) -> tuple[tuple[str, str], ...]:
    """The credentials to add to the retried request: for each realm challenged in the
    401/407, the first challenge we support. Raises ``RemoteProtocolError`` if none is."""
    found = _challenges_by_header(response)
    realms: dict[tuple[str, str | None], AuthField | None] = {}
    for header, challenge in found:
        key = (header, challenge.realm)
        if realms.get(key) is None:
            realms[key] = challenge if _usable(challenge) else None
    headers: list[tuple[str, str]] = []
    for (header, _), chosen in realms.items():
        if chosen is None:
            continue
        value = build_authorization(
            chosen,
            credentials,
            method=method,
            uri=uri,
            cnonce=make_cnonce(rng),
            nc=counter.next(chosen.nonce or ""),
        )
        headers.append((header, value))
    if not headers:
        offered = ", ".join(f"{c.scheme} {c.algorithm}" for _, c in found) or "nothing"
        raise RemoteProtocolError(f"{response.status}: no digest challenge we support ({offered})")
    return tuple(headers)


def is_stale(response: Response) -> bool:
    """True when a challenge in ``response`` carries ``stale=true``."""
    return any(challenge.stale for _, challenge in _challenges_by_header(response))
