"""A store with a rota imported: what most tests that touch the database start from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from voipalert.clock import Clock
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig


@asynccontextmanager
async def opened_store(
    database: str | Path, clock: Clock, rota: str, secret_file: Path | None = None
) -> AsyncIterator[Store]:
    """``database`` (a SQLite path or a PostgreSQL URL) opened and migrated, ``rota`` (rota
    file text) imported; closed on leaving, also when the import fails. ``secret_file``:
    the server secret (PostgreSQL needs one; SQLite defaults to ``<database>.secret``)."""
    store = await Store.open(database, clock, StoreConfig(secret_file=secret_file))
    try:
        await store.replace_rota(parse_rota(rota))
        yield store
    finally:
        await store.close()
