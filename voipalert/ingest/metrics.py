"""Prometheus metrics, one registry per app (never the process-global one, so two apps in one
process — tests, or a future second listener — never collide).

Counts of alerts by state and calls by outcome are read from the database at each scrape,
so they are right after a restart and whichever process placed the calls. The call set-up
histogram is fed the same way: each scrape observes the calls that ended since the previous
one (from the app's start, so a restart does not replay history into it).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voipalert import __version__
from voipalert.clock import Clock
from voipalert.domain.alert import AlertStatus, AttemptOutcome
from voipalert.ingest.health import PhonePath, SipState, TrunkHealth
from voipalert.ingest.intake import Outcome
from voipalert.store.api_reads import ApiReads, Counts
from voipalert.store.cluster import ClusterNode, Lease
from voipalert.store.feeds import CopyState, SourceCopy

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
TRIGGER_BUCKETS_SECONDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
CALL_SETUP_BUCKETS_SECONDS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
STALL_BUCKETS_SECONDS: Final = (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
MAX_SOURCES: Final = 32
OTHER_SOURCE: Final = "other"
_LIVE_STATES: Final = ("pending", "in_flight")
_ENDED: Final = (*(o.value for o in AttemptOutcome), "interrupted")


class _StoreCollector(Collector):
    """Figures from the last ``refresh``: alerts by state, calls by outcome, SIP state."""

    def __init__(self, clock: Clock) -> None:
        self.counts = Counts({}, {})
        self.sip = SipState.NOT_CONFIGURED
        self.phone = PhonePath()
        self.sources: dict[str, SourceCopy | None] = {}
        self.trunks: Sequence[TrunkHealth] = ()
        self._clock = clock
        self.syntheses: Callable[[], int] | None = None
        self.lease: Lease | None = None
        self.node: ClusterNode | None = None

    def collect(self) -> Iterator[Metric]:
        if self.lease is not None:
            yield from _cluster(self.lease, self.node)
        if self.syntheses is not None:
            # A mass alert renders its message once per language, however many it calls
            # (docs/capacity.md): this counter is how an operator (and the benchmark) sees it.
            yield CounterMetricFamily(
                "voipalert_tts_syntheses",
                "Prompts synthesized by Piper since start (cache hits do not count)",
                value=self.syntheses(),
            )
        alerts = GaugeMetricFamily("voipalert_alerts", "Alerts by state", labels=["state"])
        for status in AlertStatus:
            alerts.add_metric([status.value], self.counts.alerts_by_status.get(status.value, 0))
        yield alerts
        calls = CounterMetricFamily(
            "voipalert_calls", "Call attempts that ended, by outcome", labels=["outcome"]
        )
        for outcome in _ENDED:
            calls.add_metric([outcome], self.counts.attempts_by_outcome.get(outcome, 0))
        yield calls
        live = GaugeMetricFamily(
            "voipalert_calls_live", "Call attempts committed or dialling", labels=["state"]
        )
        for state in _LIVE_STATES:
            live.add_metric([state], self.counts.attempts_by_outcome.get(state, 0))
        yield live
        sip = GaugeMetricFamily(
            "voipalert_sip_registration",
            "1 for the current SIP registration state",
            labels=["state"],
        )
        for state in SipState:
            sip.add_metric([state.value], 1.0 if state is self.sip else 0.0)
        yield sip
        queued = GaugeMetricFamily(
            "voipalert_status_webhooks_queued",
            "Status webhook notifications waiting (pending) or given up (dead), by target",
            labels=["target", "state"],
        )
        for (target, state), count in sorted(self.counts.status_webhooks.items()):
            queued.add_metric([target, state], count)
        yield queued
        if self.phone.monitored:
            yield from _phone_path(self.phone)
        if self.trunks:
            yield from _trunks(self.trunks)

        yield from self._collect_sources()

    def _collect_sources(self) -> Iterator[Metric]:
        # One series per schedule with a source: bounded by the rota, not by senders.
        state = GaugeMetricFamily(
            "voipalert_rota_source",
            "1 for the copy that answers for each schedule's live source (live, cached, none)",
            labels=["schedule", "state"],
        )
        age = GaugeMetricFamily(
            "voipalert_rota_source_copy_age_seconds",
            "Age of the last good copy of each schedule's live source",
            labels=["schedule"],
        )
        now = self._clock.now_utc()
        for name, copy in self.sources.items():
            current = copy.state if copy is not None else CopyState.NONE
            for each in CopyState:
                state.add_metric([name, each.value], 1.0 if each is current else 0.0)
            if copy is not None and copy.good_at is not None:
                age.add_metric([name], (now - copy.good_at).total_seconds())
        yield state
        yield age


def _cluster(lease: Lease, node: ClusterNode | None) -> Iterator[Metric]:
    """This node's share of the work on a database of several (docs/multi-node.md)."""
    if node is not None:
        yield from _cluster_node(node)
    yield GaugeMetricFamily(
        "voipalert_cluster_leases",
        "Alerts whose escalation this node holds the lease on (at its last engine tick)",
        value=lease.held,
    )
    # The known exception to "each attempt key dialled once" is counted here: the call was
    # cut by its node's death and the person may be rung again under a new key.
    yield CounterMetricFamily(
        "voipalert_cluster_takeover_interrupted",
        "Calls of another node found in flight when this node took over their alerts",
        value=lease.interrupted_on_takeover,
    )
    # Each is an escalation another node stopped renewing: summed over the nodes, the
    # escalations that changed hands; a rise without a node's restart is a node frozen or
    # cut off from the database for longer than a lease.
    yield CounterMetricFamily(
        "voipalert_cluster_adopted",
        "Escalations whose lease had expired (their node dead or cut off) adopted by this node",
        value=lease.adopted,
    )


def _cluster_node(node: ClusterNode) -> Iterator[Metric]:
    """Which single-writer jobs run here, and the nodes heard from lately (docs/multi-node.md,
    "Operations"). The label sets are small: a job per configured feature, a node per
    running serve (a dead one drops out a few leases after its last heartbeat)."""
    held = GaugeMetricFamily(
        "voipalert_cluster_job_held",
        "1 while this node holds the single-writer job's lock and runs it, else 0",
        labels=["job"],
    )
    for job in node.jobs:
        held.add_metric([job.name], 1.0 if job.held.is_set() else 0.0)
    yield held
    age = GaugeMetricFamily(
        "voipalert_cluster_node_heartbeat_age_seconds",
        "Age of each node's last heartbeat (database server's clock), as of this node's "
        "last heartbeat; a node older than lease_seconds is dead, its leases expired",
        labels=["node", "host", "pid", "stopping"],
    )
    for peer in node.peers:
        labels = [peer.id, peer.host, str(peer.pid), "1" if peer.stopping else "0"]
        age.add_metric(labels, peer.heartbeat_age)
    yield age
    yield GaugeMetricFamily(
        "voipalert_cluster_nodes_live",
        "Nodes whose heartbeat is younger than lease_seconds (this one included)",
        value=sum(p.heartbeat_age < node.lease.seconds for p in node.peers),
    )


def _trunks(trunks: Sequence[TrunkHealth]) -> Iterator[Metric]:
    """One series per configured trunk (docs/sip-failover.md): the label set is the config."""
    up = GaugeMetricFamily(
        "voipalert_sip_trunk_up",
        "1 when the SIP trunk can carry calls as far as this node knows",
        labels=["trunk"],
    )
    failovers = CounterMetricFamily(
        "voipalert_sip_trunk_failovers",
        "Calls that failed on the trunk and were placed again on the next one",
        labels=["trunk"],
    )
    for trunk in trunks:
        up.add_metric([trunk.name], 1.0 if trunk.up else 0.0)
        failovers.add_metric([trunk.name], trunk.failovers)
    yield up
    yield failovers


def _phone_path(phone: PhonePath) -> Iterator[Metric]:
    """The self-test's figures (docs/outbound.md): alert on ``degraded`` and on the age of
    the last success (``time() - voipalert_selftest_last_success_timestamp_seconds``)."""
    yield GaugeMetricFamily(
        "voipalert_phone_path_degraded",
        "1 while the self-test finds the phone path failing (see /readyz for why)",
        value=1.0 if phone.degraded else 0.0,
    )
    if phone.last_success_at is not None:
        yield GaugeMetricFamily(
            "voipalert_selftest_last_success_timestamp_seconds",
            "Unix time of the last test call that was answered",
            value=phone.last_success_at.timestamp(),
        )
    yield CounterMetricFamily(
        "voipalert_selftest_calls", "Test calls placed by the self-test", value=phone.test_calls
    )
    yield CounterMetricFamily(
        "voipalert_selftest_failures", "Test calls that failed", value=phone.failures
    )
    yield CounterMetricFamily(
        "voipalert_sip_registration_losses",
        "Times the SIP registration was lost for longer than the self-test's grace",
        value=phone.registration_losses,
    )


class IngestMetrics:
    def __init__(self, clock: Clock) -> None:
        self.registry = CollectorRegistry()
        self._store = _StoreCollector(clock)
        self.registry.register(self._store)
        self._calls_seen_until = clock.now_utc()
        # voipalert_build_info{version,python} 1: which build a scrape came from (the usual
        # Prometheus "info" pattern, joined to other series with group_left).
        Info("voipalert_build", "The running voipalert build", registry=self.registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.triggers = Counter(
            "voipalert_triggers",
            "Events committed, by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self._sources: set[str] = set()
        self.rejected = Counter(
            "voipalert_triggers_rejected",
            "Trigger requests and e-mails refused, by edge and reason (a bounded set of words)",
            ["edge", "reason"],
            registry=self.registry,
        )
        self.trigger_seconds = Histogram(
            "voipalert_trigger_seconds",
            "From request (or message) received to committed and the engine woken",
            ["edge"],
            buckets=TRIGGER_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.call_setup_seconds = Histogram(
            "voipalert_call_setup_seconds",
            "From dialling to answer (or to the end, when never answered), by outcome",
            ["outcome"],
            buckets=CALL_SETUP_BUCKETS_SECONDS,
            registry=self.registry,
        )

        # Fed by the serve loop's stall watch (app.loop_watch): a stall delays every call's
        # audio, so operators alert on it; "kind" says whose fault (busy, blocked, preempted).
        self.loop_stalls = Counter(
            "voipalert_event_loop_stalls",
            "Event-loop stalls over the threshold ([engine] loop_stall_ms), by cause",
            ["kind"],
            registry=self.registry,
        )
        self.loop_stall_seconds = Histogram(
            "voipalert_event_loop_stall_seconds",
            "How late the event loop ran a due timer, for stalls over the threshold",
            buckets=STALL_BUCKETS_SECONDS,
            registry=self.registry,
        )

        # Fed by the silencer (ingest.silencer): requests to Alertmanagers by what they did
        # (silence, expire) and how they ended (ok, retry, failed, skipped).
        # Fed by call-in (notify.callin): what each call to us came to (docs/call-in.md).
        self.callin = Counter(
            "voipalert_callin_events",
            "Calls to voipalert's call-in menu and what they did, by event: call (answered), "
            "refused_locked (603: too many wrong PINs this hour), refused_unknown, "
            "identified, wrong_pin, locked_out (the call's PIN tries used up), "
            "acknowledged, resolved",
            ["event"],
            registry=self.registry,
        )
        self.silences = Counter(
            "voipalert_alertmanager_silence_requests",
            "Silence requests to Alertmanager, by action and result",
            ["action", "result"],
            registry=self.registry,
        )
        # Fed by the status webhook sender (ingest.status_hooks): tries by how they ended
        # (ok, retry, dead); targets are the configured ones, so the label set is bounded.
        self.status_webhooks = Counter(
            "voipalert_status_webhooks",
            "Status webhook tries, by target and result (ok, retry, dead)",
            ["target", "result"],
            registry=self.registry,
        )

    def observe_status_webhook(self, target: str, result: str) -> None:
        self.status_webhooks.labels(target=target, result=result).inc()

    def observe_callin(self, event: str) -> None:
        self.callin.labels(event=event).inc()

    def observe_silence(self, action: str, result: str) -> None:
        self.silences.labels(action=action, result=result).inc()

    def source_label(self, source: str) -> str:
        """``source`` while fewer than ``MAX_SOURCES`` are known, else ``other``."""
        if source in self._sources:
            return source
        if len(self._sources) < MAX_SOURCES and source != OTHER_SOURCE:
            self._sources.add(source)
            return source
        return OTHER_SOURCE

    def observe_stall(self, kind: str, seconds: float) -> None:
        self.loop_stalls.labels(kind=kind).inc()
        self.loop_stall_seconds.observe(seconds)

    def observe_committed(self, source: str, outcome: Outcome) -> None:
        self.triggers.labels(source=self.source_label(source), outcome=outcome.value).inc()

    def count_cluster(self, lease: Lease, node: ClusterNode | None = None) -> None:
        """Expose this node's leases and take-overs (``voipalert_cluster_*``), and with
        ``node`` its single-writer jobs and the nodes it heard from."""
        self._store.lease = lease
        self._store.node = node

    def count_syntheses(self, count: Callable[[], int]) -> None:
        """Expose the speech renderer's synthesis count as ``voipalert_tts_syntheses``."""
        self._store.syntheses = count

    async def refresh(
        self,
        tables: ApiReads,
        sip: SipState,
        phone: PhonePath | None = None,
        sources: dict[str, SourceCopy | None] | None = None,
        trunks: Sequence[TrunkHealth] = (),
    ) -> None:
        self._store.counts = await tables.counts()
        self._store.trunks = trunks
        self._store.sip = sip
        self._store.phone = phone or PhonePath()
        self._store.sources = sources or {}
        for call in await tables.calls_finished_after(self._calls_seen_until):
            self.call_setup_seconds.labels(outcome=call.outcome).observe(call.setup_seconds)
            self._calls_seen_until = max(self._calls_seen_until, call.ended_at)

    def render(self) -> bytes:
        return generate_latest(self.registry)
