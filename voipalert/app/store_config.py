"""The database part of the settings mapping, on its own: the commands that only touch the
database (``token``, ``rota``) use it without importing the phone, the engine or speech."""

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
