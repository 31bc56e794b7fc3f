"""The database part of the settings mapping, on its own: the commands that only touch the
database (``token``, ``rota``, ``heartbeat``) use it without importing the phone, the engine
or speech."""

from __future__ import annotations

from voipalert.settings import Settings
from voipalert.store import StoreConfig


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
