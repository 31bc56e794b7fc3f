"""Fetching a live source's body over HTTP: conditional requests, a size cap, a deadline
(docs/rota-sources.md).

- iCalendar and JSON: ``GET`` with ``If-None-Match`` (the stored ETag) and
  ``If-Modified-Since`` (the stored Last-Modified), RFC 9110 §13.1.2 and §13.1.3; a
  ``304 Not Modified`` (RFC 9110 §15.4.5) means the stored body still holds.
- CalDAV: a ``PROPFIND`` (Depth 0) of the collection's ``getctag`` (the calendar server
  extension every CalDAV server we know keeps; it changes whenever a resource does) plays
  the validator's part, then a ``REPORT`` calendar-query with a time-range (RFC 4791
  §7.8, §9.9) fetches the events that overlap the window.
- A JSON source's URL may contain ``{at}``: the instant asked about, ISO 8601 in UTC.

Every body is read at most ``max_bytes`` (one more byte means refused), and each request
has a total deadline; redirects are not followed (a LAN source that moves is a config
change). Credentials, when configured, go as HTTP Basic (RFC 7617), the password read from
its file at each fetch so it can be rotated without a restart.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import aiohttp

from voipalert.domain.rota import ScheduleSource, SourceKind
from voipalert.ingest.feed_parse import SourceError

DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS: Final = 20.0
USER_AGENT: Final = "voipalert-rota-source"
_CTAG_BODY: Final = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">'
    b"<d:prop><cs:getctag/></d:prop></d:propfind>"
)


@dataclass(frozen=True, slots=True)
class Fetched:
    """``body`` None: not modified since the stored copy."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str | None = None
    last_modified: str | None = None


def _utc(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def source_url(source: ScheduleSource, at: datetime) -> str:
    if source.kind is SourceKind.JSON:
        return source.url.replace("{at}", at.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    return source.url


def _auth(source: ScheduleSource) -> dict[str, str]:
    """The Authorization header of HTTP Basic (RFC 7617 §2, UTF-8 per §2.1)."""
    if source.username is None:
        return {}
    password = ""
    if source.password_file is not None:
        try:
            password = Path(source.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SourceError(f"cannot read password_file: {exc}") from None
    if ":" in source.username:
        raise SourceError("a Basic user name cannot contain ':' (RFC 7617 §2)")
    pair = f"{source.username}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise SourceError(f"body of {response.content_length} bytes; the limit is {max_bytes}")
    body = await response.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise SourceError(f"body over {max_bytes} bytes")
    return body


class Fetcher:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def fetch(
        self,
        source: ScheduleSource,
        stored: Validators,
        at: datetime,
        window: tuple[datetime, datetime],
    ) -> Fetched:
        """The source's current body, or ``Fetched(None)`` when ``stored`` still holds.
        Raises ``SourceError``, ``aiohttp.ClientError`` or ``TimeoutError``."""
        if source.kind is SourceKind.CALDAV:
            return await self._caldav(source, stored, window)
        headers = {"User-Agent": USER_AGENT, **_auth(source)}
        if stored.etag:
            headers["If-None-Match"] = stored.etag
        if stored.last_modified:
            headers["If-Modified-Since"] = stored.last_modified
        async with self._session.get(
            source_url(source, at),
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            if response.status == 304 and (stored.etag or stored.last_modified):
                return Fetched(None, stored.etag, stored.last_modified)
            if response.status != 200:
                raise SourceError(f"HTTP {response.status} {response.reason or ''}".strip())
            body = await _read_capped(response, self._max_bytes)
            return Fetched(
                body, response.headers.get("ETag"), response.headers.get("Last-Modified")
            )

    async def _caldav(
        self, source: ScheduleSource, stored: Validators, window: tuple[datetime, datetime]
    ) -> Fetched:
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/xml; charset=utf-8",
            **_auth(source),
        }
        ctag = None
        async with self._session.request(
            "PROPFIND", source.url, data=_CTAG_BODY, headers={**headers, "Depth": "0"},
            timeout=self._timeout, allow_redirects=False,
        ) as response:  # fmt: skip
            if response.status != 207:
                raise SourceError(f"CalDAV PROPFIND: HTTP {response.status}")
            ctag = _ctag(await _read_capped(response, 65_536))
        if ctag is not None and ctag == stored.etag:
            return Fetched(None, stored.etag)
        query = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
            "<d:prop><c:calendar-data/></d:prop>"
            '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            f'<c:time-range start="{_utc(window[0])}" end="{_utc(window[1])}"/>'
            "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
        ).encode()
        async with self._session.request(
            "REPORT", source.url, data=query, headers={**headers, "Depth": "1"},
            timeout=self._timeout, allow_redirects=False,
        ) as response:  # fmt: skip
            if response.status != 207:
                raise SourceError(f"CalDAV REPORT: HTTP {response.status}")
            return Fetched(await _read_capped(response, self._max_bytes), ctag)


def _ctag(body: bytes) -> str | None:
    try:
        root = ET.fromstring(body)  # size-capped; expat refuses entity bombs
    except ET.ParseError:
        return None
    found = root.find(".//{http://calendarserver.org/ns/}getctag")
    return found.text if found is not None and found.text else None
