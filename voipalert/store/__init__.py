"""voipalert's database (SQLite through aiosqlite): the only package with SQL in it."""

from voipalert.store.alert_sql import AuditEntry
from voipalert.store.db import StoreConfig
from voipalert.store.errors import AlertNotFound, StoreError, UnknownReference
from voipalert.store.repo import AlertFilter, AlertPage, Page, Store, Transition

__all__ = [
    "AlertFilter",
    "AlertNotFound",
    "AlertPage",
    "AuditEntry",
    "Page",
    "Store",
    "StoreConfig",
    "StoreError",
    "Transition",
    "UnknownReference",
]
