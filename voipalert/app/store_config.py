"""The database part of the settings mapping, on its own: the commands that only touch the
database (``token``, ``rota``, ``heartbeat``) use it without importing the phone, the engine
or speech."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voipalert.settings import Settings
from voipalert.store import StoreConfig

if TYPE_CHECKING:
    from voipalert.ingest.feed_poll import SourcesConfig


def store_config(settings: Settings) -> StoreConfig:
    database = settings.database
    return StoreConfig(
        busy_timeout_ms=database.busy_timeout_ms,
        synchronous=database.synchronous,
        secret_file=settings.http.secret_file,
    )


def public_url(settings: Settings) -> str:
    """voipalert's base URL as others reach it: ``[http] public_url``, else host and port."""
    if settings.http.public_url:
        return settings.http.public_url.rstrip("/")
    host = settings.http.host
    shown = f"[{host}]" if host.version == 6 else str(host)
    return f"http://{shown}:{settings.http.port}"


def sources_config(settings: Settings) -> SourcesConfig:
    """How live schedule sources are fetched (``serve``, and ``oncall`` when a schedule has
    one); the poller's module, which loads the HTTP client, only when asked."""
    from voipalert.ingest.feed_poll import SourcesConfig

    section = settings.rota_sources
    return SourcesConfig(
        max_bytes=section.max_bytes,
        timeout_seconds=section.timeout_seconds,
        expand_seconds=section.expand_seconds,
        horizon_days=section.horizon_days,
        severity=section.alert_severity,
    )
