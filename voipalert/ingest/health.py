"""Liveness and readiness.

``/healthz`` only says the process answers. ``/readyz`` says whether it can do its job: the
database answers a read (never a write: the probe is unauthenticated), and the SIP side can
place calls (registered, or configured to call targets directly). It also says when the
self-test finds the phone path degraded (a test call failed, the registration was lost),
with the reasons (docs/outbound.md), and each SIP trunk's state: with several trunks, one
registered trunk is enough to be ready, and a failing one is a degraded reason
(docs/sip-failover.md). The SIP state and the phone path come from callables
the composition root passes in, so this package needs nothing from the SIP stack.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from voipalert.store import Store, StoreError
from voipalert.store.api_reads import ApiReads

log = logging.getLogger("voipalert.http")


class SipState(enum.StrEnum):
    REGISTERED = "registered"
    REGISTERING = "registering"
    FAILED = "failed"  # registration refused or the registrar unreachable
    NOT_CONFIGURED = "not_configured"  # no registrar: targets are called directly

    @property
    def can_call(self) -> bool:
        return self in (SipState.REGISTERED, SipState.NOT_CONFIGURED)


SipStateSource = Callable[[], SipState]


@dataclass(frozen=True, slots=True)
class PhonePath:
    """What the self-test knows of the phone path (docs/outbound.md §Self-test), filled by
    the composition root (``app.selftest``): this package knows nothing of SIP."""

    monitored: bool = False
    degraded: tuple[str, ...] = ()  # why, one reason per failing part; empty: all well
    last_success_at: datetime | None = None  # the last test call that was answered
    test_calls: int = 0
    failures: int = 0  # test calls that failed, since start
    registration_losses: int = 0  # times the registration was lost longer than the grace


PhonePathSource = Callable[[], PhonePath]


@dataclass(frozen=True, slots=True)
class TrunkHealth:
    """One SIP trunk as the composition root sees it (docs/sip-failover.md)."""

    name: str
    state: str  # "registered", "failing" or "unknown"
    up: bool  # can carry calls as far as we know (registered, or not registering and not failing)
    since: datetime | None = None
    last_error: str = ""
    failovers: int = 0  # calls that failed on it and went on to the next trunk

    def degraded_reason(self) -> str | None:
        if self.state != "failing":
            return None
        since = f" since {self.since.isoformat(timespec='seconds')}" if self.since else ""
        return f"sip trunk {self.name} failing{since}: {self.last_error or 'no detail'}"


TrunkSource = Callable[[], Sequence[TrunkHealth]]


@dataclass(frozen=True, slots=True)
class Readiness:
    database: str  # "ok" or why not
    sip: SipState

    @property
    def ready(self) -> bool:
        return self.database == "ok" and self.sip.can_call


async def check_readiness(tables: ApiReads, sip_state: SipStateSource) -> Readiness:
    try:
        await tables.probe_readable()
        database = "ok"
    except (StoreError, sqlite3.Error, OSError) as exc:
        log.warning("readiness: database not readable: %s", exc)
        database = f"not readable: {type(exc).__name__}"
    return Readiness(database, sip_state())


async def source_report(store: Store) -> dict[str, str]:
    """Which copy answers for each schedule with a live source (docs/rota-sources.md)."""
    try:
        states = await store.source_states()
    except (StoreError, sqlite3.Error) as exc:
        log.warning("readiness: rota sources not readable: %s", exc)
        return {}
    return {
        name: copy.describe() if copy is not None else "none (not fetched yet)"
        for name, copy in states.items()
    }
