"""A store with a rota imported: what most tests that touch the database start from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from voipalert.clock import Clock
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig

# One person, paged by a default policy: enough for a store test that needs an alert.
ALICE_ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
policies:
  - name: default
    steps: [{targets: [{person: alice}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


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
