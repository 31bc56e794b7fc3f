"""voipalert's database (SQLite through aiosqlite, or PostgreSQL through asyncpg:
docs/database.md): the only package with SQL in it."""

from voipalert.store.alert_sql import AuditEntry
from voipalert.store.db import StoreConfig
from voipalert.store.errors import AlertNotFound, StoreError, UnknownReference
from voipalert.store.repo import AlertFilter, AlertPage, Page, Store, Transition
from voipalert.store.tokens import ApiToken, Scope

__all__ = [
    "AlertFilter",
    "AlertNotFound",
    "AlertPage",
    "ApiToken",
    "AuditEntry",
    "Page",
    "Scope",
    "Store",
    "StoreConfig",
    "StoreError",
    "Transition",
    "UnknownReference",
]
