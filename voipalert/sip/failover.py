"""Trunk failover decisions (docs/sip-failover.md): sans-IO, time is an argument.

Two questions, answered here so they are tested without a socket:

* **May a failed call be tried again on the next trunk, within the same attempt?** Only
  when the failure says nothing about the callee: the trunk (or the path to it) failed
  before anything reached a phone. RFC 3263 §4.3 has a client try the next server on a
  transport error, a timeout or a 503; RFC 3261 §16.7 (a proxy's own response choice) and
  §21.5 treat 5xx as the server's failure, not the request's, and §21.4.9 makes a 408 from a
  proxy a timeout of the path. Anything that shows the callee was reached is final: a
  provisional beyond 100 (ringing, early media), an answer, a 4xx/6xx about the callee
  (486 Busy, 603 Decline, 404 Not Found), a Q.850 cause that names the callee's fate, or
  our own stop request. Trying again then would ring a person twice.
* **In which order are the trunks tried?** The configured order, except that a trunk whose
  call just failed is put last for ``cooldown_seconds`` (longer when its 503 carried
  ``Retry-After``, capped): a failing trunk is not re-tried first on every attempt, and each
  attempt still tries each trunk at most once, so a trunk that answers every INVITE with 503
  costs one INVITE per attempt, never a storm.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

FAILOVER_STATUSES: Final = frozenset({408, 500, 502, 503, 504})
"""Finals that mean the server or path failed (RFC 3261 §21.4.9, §21.5.1-§21.5.5)."""
FAILOVER_CLASSIFIERS: Final = frozenset({"status", "no response", "setup timeout"})
"""How a call's outcome was decided (``CallEnded.classified_by``) when a failover may follow:
not ``cause`` (a Q.850 cause about the callee), ``ring timeout`` (it rang) or ``local``."""
MAX_RETRY_AFTER_SECONDS: Final = 3600.0


def may_fail_over(
    *,
    status: int | None,
    classified_by: str | None,
    progressed: bool,
    answered: bool,
    stopped: bool,
) -> bool:
    """Whether a call that ended so may be placed again on another trunk (module header)."""
    if answered or progressed or stopped or classified_by not in FAILOVER_CLASSIFIERS:
        return False
    if classified_by in ("no response", "setup timeout"):
        # Transport error, Timer B, or only 100 Trying until the setup limit: no phone rang.
        return True
    return status in FAILOVER_STATUSES


class TrunkState(enum.StrEnum):
    REGISTERED = "registered"
    FAILING = "failing"
    UNKNOWN = "unknown"
    """Not registering (IP-authenticated trunk) and no call failed on it lately, or the
    first registration has not been answered yet."""


@dataclass(slots=True)
class _Record:
    failed_at: float | None = None
    cooldown_until: float = float("-inf")
    last_error: str = ""
    failures: int = 0
    """Calls that failed on this trunk and were (or could have been) failed over."""


@dataclass(slots=True)
class TrunkBoard:
    """Call failures per trunk and the order to try them in. Names are the configured ones,
    in order of preference."""

    names: Sequence[str]
    cooldown_seconds: float = 60.0
    _records: dict[str, _Record] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError("trunk names must be given, and unique")
        self._records = {name: _Record() for name in self.names}

    def order(self, now: float) -> list[str]:
        """Every trunk once: the ones not cooling down in configured order, then the others
        (soonest out of cool-down first)."""
        ready = [n for n in self.names if self._records[n].cooldown_until <= now]
        cooling = sorted(
            (n for n in self.names if self._records[n].cooldown_until > now),
            key=lambda n: self._records[n].cooldown_until,
        )
        return ready + cooling

    def call_failed(
        self, name: str, error: str, now: float, retry_after: float | None = None
    ) -> None:
        record = self._records[name]
        pause = self.cooldown_seconds
        if retry_after is not None and retry_after > 0:
            # RFC 3261 §21.5.4: the server asks not to be tried before Retry-After.
            pause = max(pause, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        record.failed_at = now
        record.cooldown_until = now + pause
        record.last_error = error
        record.failures += 1

    def call_carried(self, name: str) -> None:
        """A call went through this trunk (whatever the callee did): it works again."""
        record = self._records[name]
        record.cooldown_until = float("-inf")
        record.failed_at = None

    def cooling_down(self, name: str, now: float) -> bool:
        return self._records[name].cooldown_until > now

    def last_error(self, name: str) -> str:
        return self._records[name].last_error

    def failed_at(self, name: str) -> float | None:
        return self._records[name].failed_at

    def failures(self, name: str) -> int:
        return self._records[name].failures
