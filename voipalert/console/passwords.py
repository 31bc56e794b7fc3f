"""Password hashing for console users: scrypt (memory-hard, in the standard library).

The stored string names its parameters, ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` (salt
and hash in URL-safe base64), so a later release can raise them and still check old
hashes (and re-hash them at the next log-in, ``needs_rehash``).

Parameters: n = 2**14, r = 8, p = 5, one of the settings OWASP's password storage cheat
sheet gives as equal in strength to its minimum (n = 2**17, r = 8, p = 1): the same work
(about a quarter of a second of one core per hash on the machine this was written on), in
16 MiB instead of 128 MiB. The smaller memory matters inside ``serve``: the end-to-end
test's loop watch once saw the event loop that paces RTP blocked for 15 ms while a 128 MiB
hash ran in a worker thread (our reading, not proven: faulting that much memory in takes
the process's memory-map lock); 16 MiB makes such a stall much less likely. The work runs
in a worker thread (``asyncio.to_thread``), never on the event loop. A log-in is also rate
limited and locks the account after repeated failures (``console.security``), so the cost
cannot be used to load the server either. Tests use a lower cost (``Cost(14, 8, 1)``), which only
changes how long their hashes take.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

SALT_BYTES: Final = 16
KEY_BYTES: Final = 32
MIN_PASSWORD_CHARS: Final = 10
MAX_PASSWORD_CHARS: Final = 1024
_FORMAT: Final = re.compile(
    r"^scrypt\$(?P<log_n>[0-9]{1,2})\$(?P<r>[0-9]{1,2})\$(?P<p>[0-9]{1,2})"
    r"\$(?P<salt>[A-Za-z0-9_-]{16,64})\$(?P<hash>[A-Za-z0-9_-]{32,128})$"
)


@dataclass(frozen=True, slots=True)
class Cost:
    log_n: int = 14
    r: int = 8
    p: int = 5

    @property
    def maxmem(self) -> int:
        # scrypt needs 128 * r * n bytes (plus a little; the p lanes run one after the
        # other in OpenSSL and reuse it): allow twice that.
        return 2 * 128 * self.r * (1 << self.log_n) + (1 << 20)


DEFAULT_COST: Final = Cost()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, cost: Cost) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=1 << cost.log_n,
        r=cost.r,
        p=cost.p,
        maxmem=cost.maxmem,
        dklen=KEY_BYTES,
    )


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be used, or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"a password needs at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"a password has at most {MAX_PASSWORD_CHARS} characters"
    return None


def hash_password(password: str, cost: Cost = DEFAULT_COST) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, cost)
    return f"scrypt${cost.log_n}${cost.r}${cost.p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison). A malformed
    stored string, or a password over the length limit, never matches."""
    match = _FORMAT.match(stored)
    if match is None or len(password) > MAX_PASSWORD_CHARS:
        return False
    cost = Cost(int(match["log_n"]), int(match["r"]), int(match["p"]))
    if not (10 <= cost.log_n <= 22 and 1 <= cost.r <= 32 and 1 <= cost.p <= 16):
        return False
    key = _derive(password, _unb64(match["salt"]), cost)
    return hmac.compare_digest(key, _unb64(match["hash"]))


def needs_rehash(stored: str, cost: Cost = DEFAULT_COST) -> bool:
    match = _FORMAT.match(stored)
    return match is None or Cost(int(match["log_n"]), int(match["r"]), int(match["p"])) != cost


# A hash of nothing in particular: checked against when the user does not exist, so that an
# unknown name takes as long to refuse as a wrong password.
DUMMY_HASH: Final = (
    "scrypt$14$8$5$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)
