"""What a ``[database] url`` for PostgreSQL says, read without connecting (pure).

The URL is libpq's: ``postgresql://user:password@h1:5432,h2:5433/db?param=value``. The
store reads three things from it itself rather than leaving them to asyncpg:

* the hosts, one by one (``host_urls``): a failed connection says what each host answered
  (asyncpg reports only the last host's error: a refused primary would hide a read-only
  standby), and the hosts are tried in a staggered order (``store.pg``);
* ``target_session_attrs`` (``target_session_attrs``): only the values that find a server
  accepting writes are allowed, since voipalert writes; ``read-write`` by default;
* ``connect_timeout`` (``connect_timeout``): seconds per host, as libpq's (at least 2, 0 or
  absent: 10 here, where libpq would wait forever); asyncpg does not know this parameter
  and would send it to the server as a setting, so ``host_urls`` leaves it out.

``config check`` and the start of ``serve`` run the same checks (settings.sections), so a
URL that cannot work is refused before anything connects (docs/database-failover.md).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voipalert.store.errors import DatabaseUnusable

DEFAULT_CONNECT_TIMEOUT: Final = 10.0
MIN_CONNECT_TIMEOUT: Final = 2.0  # libpq: "a value of 1 is interpreted as 2"
# voipalert writes: only these target_session_attrs find a server that accepts writes.
WRITABLE_ATTRS: Final = ("read-write", "primary")
_OURS: Final = ("connect_timeout",)  # read here, never passed on to asyncpg


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    if ":" not in userinfo:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***{at}{hosts}"))


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def _param(url: str, name: str) -> str | None:
    values = [value for key, value in _query(url) if key == name]
    return values[-1] if values else None


def host_urls(url: str) -> list[tuple[str, str]]:
    """``(host, URL of that host alone)`` for each host the URL names, in its order, each
    without the parameters the store reads itself (``connect_timeout``)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in _query(url) if key not in _OURS]
    parts = parts._replace(query=urlencode(query))
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return [(hosts or "the default host", urlunsplit(parts))]
    return [
        (host, urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")))
        for host in hosts.split(",")
    ]


def target_session_attrs(url: str) -> str:
    """The URL's ``target_session_attrs``, ``read-write`` by default (libpq's default is
    ``any``, which would keep a connection to a read-only standby)."""
    given = _param(url, "target_session_attrs") or "read-write"
    if given not in WRITABLE_ATTRS:
        raise DatabaseUnusable(
            shown_url(url),
            f"target_session_attrs={given} may choose a read-only server, and voipalert writes",
            "use target_session_attrs=read-write (the default) or primary",
            configuration=True,
        )
    return given


def connect_timeout(url: str) -> float:
    """Seconds to wait for one host to answer (libpq's ``connect_timeout``)."""
    given = _param(url, "connect_timeout")
    if given is None or given.strip() in ("", "0"):
        return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = int(given)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise DatabaseUnusable(
            shown_url(url),
            f"connect_timeout={given} is not a number of seconds",
            "give whole seconds per host, e.g. connect_timeout=3",
            configuration=True,
        )
    return max(MIN_CONNECT_TIMEOUT, float(seconds))


def check_url(url: str) -> None:
    """Everything about the URL that can be known without connecting; ``DatabaseUnusable``
    (a configuration error) for the first thing wrong."""
    target_session_attrs(url)
    connect_timeout(url)
