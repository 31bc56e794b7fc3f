"""``voipalert serve``: the main job, one process, one TaskGroup (docs/architecture.md §5).

Start-up, in the order that lets each check say clearly what is wrong:

0. the database's engine lock (``store.engine_lock``): a second ``serve`` on the same
   database stops here, naming the holder's pid;
1. the voices (a missing or broken voice is a configuration error, exit 2);
2. the database (migrations applied), then the languages of the rota against the voices;
3. the SIP socket (a port already taken stops the start) and the registration, which only
   warns when it fails: ``/readyz`` reports it and calls are still tried;
4. HTTP (and SMTP when enabled), whose ports are checked the same way;
5. the engine, in the TaskGroup, with the IMAP poller when one is configured.

SIGTERM or SIGINT: stop accepting (HTTP, SMTP); ``Engine.shutdown`` asks every call in
progress to end — each hears "goodbye" and gets a BYE within seconds; one whose key was
already pressed is stored acknowledged, the others interrupted and re-planned at the next
start (docs/call-lifecycle.md) — then un-register, close the database; exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from voipalert.app.callin import run_callin, with_callin
from voipalert.app.config import (
    console_config,
    dns_config,
    engine_config,
    ingest_config,
    media_config,
    outbound_config,
    script_config,
    selftest_config,
    silencer_config,
    sip_bind,
    sip_tls,
    sip_tls_server,
    ua_config,
)
from voipalert.app.heap import QuietCollector, settle_heap
from voipalert.app.housekeeping import Housekeeping
from voipalert.app.loop_watch import LoopWatch, Stall, log_stall
from voipalert.app.selftest import (
    AlertOnFailure,
    PhonePathListener,
    SelfTest,
    check_number,
    lend,
)
from voipalert.app.shift_notices import ShiftNoticeConfig, ShiftNoticeSender
from voipalert.app.store_config import sources_config, store_config
from voipalert.app.test_call import TestCaller, add_test_call_route
from voipalert.app.trunks import (
    TrunkStartError,
    phone_sip_state,
    start_trunks,
    trunk_health,
    trunks_sip_state,
)
from voipalert.calls import Phone
from voipalert.clock import Clock, SystemClock
from voipalert.console.routes import add_console
from voipalert.domain.rota import NotifyMethod
from voipalert.engine import Engine
from voipalert.errors import ConfigError, VoipAlertError
from voipalert.ingest.app_keys import INTAKE, METRICS, PHONE_PATH, TRUNKS
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.feed_poll import SourcePoller
from voipalert.ingest.health import SipState, TrunkSource
from voipalert.ingest.heartbeat import HeartbeatWatch
from voipalert.ingest.imap import ImapPoller
from voipalert.ingest.metrics import IngestMetrics
from voipalert.ingest.silencer import Silencer
from voipalert.ingest.smtp import AlertSmtpHandler, start_smtp
from voipalert.ingest.status_hooks import StatusSender
from voipalert.ingest.webhook import build_app, start_http
from voipalert.net.rx_pool import AnalysisPool
from voipalert.notify import Notifier
from voipalert.notify.channels import ChannelNotifier
from voipalert.notify.email import EmailNotifier, MailConfig, mail_tls_context
from voipalert.notify.message import MessageNotifier, SipTexter
from voipalert.notify.replies import TextReplies
from voipalert.notify.voice import VoiceNotifier, warm_phrases
from voipalert.settings import Settings, masked_dump
from voipalert.sip.events import RegistrationState
from voipalert.store import Store
from voipalert.store.cluster import ClusterNode
from voipalert.store.engine_lock import EngineLock, EngineLockHeld
from voipalert.store.errors import StoreError
from voipalert.trunks import Trunks
from voipalert.tts.speech import Speech

log = logging.getLogger("voipalert.serve")
REGISTRATION_WAIT_SECONDS = 5.0


class StartupError(VoipAlertError):
    """Something outside the configuration stops the start (a port taken...)."""


@dataclass(frozen=True, slots=True)
class Running:
    """What a started server listens on (for the log line, tests and the demo)."""

    http_port: int
    sip: str
    registration: str


def sip_state(phone: Phone) -> SipState:
    return phone_sip_state(phone)


async def serve(
    settings: Settings,
    on_ready: Callable[[Running], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or until ``stop`` is set, for an embedding caller)."""
    clock = SystemClock()
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with AsyncExitStack() as stack:
            # First of all, before a port is bound or a phone registered.
            _lock_database(settings, stack)
            stalls = await _watch_loop(settings, stack)
            speech = await asyncio.to_thread(Speech.open, settings.tts.to_config())
            stack.push_async_callback(speech.aclose)
            store = await _open_store(settings, clock, stack)
            languages = await _check_languages(store, speech)
            await speech.renderer.preload()
            await _warm_phrases(speech, languages, settings)
            phone, trunks = await _start_phones(settings, stack)
            engine, texter = _engine(settings, store, clock, trunks, speech)
            node = await _join_cluster(settings, store, engine)
            config = ingest_config(settings)
            silencer = Silencer(store, clock, silencer_config(settings), on_resolved=engine.wake)
            sender = StatusSender(store, clock, outbound_config(settings))
            await sender.start()
            app = build_app(
                store, wake=_all(engine.wake, silencer.wake, sender.wake),
                sip_state=lambda: trunks_sip_state(trunks), config=config, clock=clock,
            )  # fmt: skip
            _observe(app, silencer, sender, stalls, lambda: trunk_health(trunks, clock), node)
            app[METRICS].count_syntheses(lambda: speech.renderer.synth_count)
            test_caller = _add_web_routes(app, settings, phone, speech)
            selftest = _self_test(settings, app, phone, test_caller, clock)
            edges = _Edges()
            stack.push_async_callback(edges.close)
            http_port = await _start_http(settings, app, edges)
            await _start_smtp(settings, app, config, edges)
            running = Running(http_port, _sip_text(settings), await _registration(phone))
            settle_heap()
            log.info(
                "voipalert ready: HTTP on %s:%s, SIP %s, registration %s",
                settings.http.host, http_port, running.sip, running.registration,
                extra={"registration_state": trunks_sip_state(trunks).value},
            )  # fmt: skip
            if on_ready is not None:
                on_ready(running)
            async with asyncio.TaskGroup() as group:
                engine_task = group.create_task(engine.run(), name="engine")
                watch = HeartbeatWatch(store, app[INTAKE], clock, settings.heartbeat.check_seconds)
                jobs = [
                    *_side_jobs(app, config, silencer, watch, sender, node),
                    ("selftest", selftest.run()),
                    *_text_jobs(settings, store, clock, engine, texter),
                    _single(node, "rota-sources",
                            _rota_sources(settings, app, store, clock, stack).run),
                    ("housekeeping", Housekeeping(
                        store, clock, settings.database.sent_retention_days,
                        node_retention_hours=settings.cluster.node_retention_hours
                        if node is not None else None).run()),
                    # An ack by phone wakes what an ack by the API wakes (docs/call-in.md).
                    ("call-in", run_callin(
                        settings, store, speech, clock, phone,
                        _all(engine.wake, silencer.wake, sender.wake), languages,
                        app[METRICS].observe_callin)),
                    *([("node", node.run())] if node is not None else []),
                    # Full garbage collections when no call would hear the stall.
                    ("gc", QuietCollector(
                        lambda: any(t.phone.active_calls for t in trunks.trunks)).run()),
                ]  # fmt: skip
                side_tasks = [group.create_task(job, name=name) for name, job in jobs]
                await stop.wait()
                log.info("stopping: no new alerts; ending calls in progress")
                test_caller.shutdown()
                await _hand_over(node, engine, edges)
                for task in (engine_task, *side_tasks):
                    task.cancel()
            log.info("stopped")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _lock_database(settings: Settings, stack: AsyncExitStack) -> None:
    """One engine per database (store.engine_lock), held until the process ends."""
    if settings.database.url is not None:
        return  # PostgreSQL: Store.claim_engine, once connected
    try:
        lock = EngineLock.acquire(settings.database.path)
    except EngineLockHeld as exc:
        raise StartupError(str(exc)) from exc
    if lock is not None:
        stack.callback(lock.release)


async def _open_store(settings: Settings, clock: SystemClock, stack: AsyncExitStack) -> Store:
    store = await Store.open(settings.database.location, clock, store_config(settings))
    stack.push_async_callback(store.close)
    if settings.database.url is not None and not settings.cluster.single_engine:
        return store  # several nodes share the work: leases (store.cluster), no lock
    try:
        await store.claim_engine()  # PostgreSQL: its advisory lock (store.pg)
    except EngineLockHeld as exc:
        raise StartupError(str(exc)) from exc
    return store


async def _join_cluster(settings: Settings, store: Store, engine: Engine) -> ClusterNode | None:
    """On PostgreSQL (unless ``[cluster] single_engine``), this serve becomes one of the
    database's nodes: its engine works the alerts it leases (docs/multi-node.md)."""
    if settings.database.url is None or settings.cluster.single_engine:
        return None
    return await store.join_cluster(
        settings.cluster.lease_seconds, engine.wake, lines=engine.line_budget
    )


async def _hand_over(node: ClusterNode | None, engine: Engine, edges: _Edges) -> None:
    """At SIGTERM, once the intake is closed: alerts without a call of ours go to the other
    nodes at once; the calls in progress end (engine.shutdown); then every lease is
    released, so the other nodes re-plan now rather than after the leases expire."""
    await edges.close()
    if node is not None:
        try:
            await node.begin_stopping()
        except StoreError as exc:
            log.warning("could not hand the alerts over early: %s", exc)
    await engine.shutdown()
    if node is not None:
        try:
            await node.leave()
        except StoreError as exc:
            log.warning("leases not released (they expire in %.0f s): %s", node.lease.seconds, exc)


def _rota_sources(
    settings: Settings, app: web.Application, store: Store, clock: Clock, stack: AsyncExitStack
) -> SourcePoller:
    """The poller of the schedules' live sources (docs/rota-sources.md), with its own HTTP
    client session, closed with the process."""
    http_client = aiohttp.ClientSession()
    stack.push_async_callback(http_client.close)
    return SourcePoller(store, app[INTAKE], clock, http_client, sources_config(settings))


def _observe(
    app: web.Application,
    silencer: Silencer,
    sender: StatusSender,
    stalls: _StallReport,
    trunks: TrunkSource,
    node: ClusterNode | None,
) -> None:
    """The side services report into the app's metrics (and the trunks into /readyz)."""
    app[TRUNKS] = trunks
    if node is not None:
        app[METRICS].count_cluster(node.lease, node)
    silencer.observe = app[METRICS].observe_silence
    sender.observe = app[METRICS].observe_status_webhook
    stalls.metrics = app[METRICS]


def _engine(
    settings: Settings, store: Store, clock: Clock, trunks: Trunks, speech: Speech
) -> tuple[Engine, SipTexter | None]:
    """The engine, with a notifier per method (calls, texts, e-mail)."""
    channels, texter = _channels(settings, trunks, speech)
    channels |= _mail_channel(settings, store, clock)
    return Engine(store, ChannelNotifier(channels), clock, engine_config(settings)), texter


def _channels(
    settings: Settings, trunks: Trunks, speech: Speech
) -> tuple[dict[NotifyMethod, Notifier], SipTexter | None]:
    """The notifier of each method: calls always (failing over between the trunks); SIP
    MESSAGE texts, through the first trunk, unless turned off."""
    domain = ua_config(settings).domain
    channels: dict[NotifyMethod, Notifier] = {
        NotifyMethod.CALL: VoiceNotifier(trunks, speech, domain)
    }
    if not settings.text.sip_messages:
        return channels, None
    texter = SipTexter(trunks.first.phone)
    channels[NotifyMethod.MESSAGE] = MessageNotifier(
        texter, domain, settings.text.reply_window_seconds
    )
    return channels, texter


def _mail_channel(settings: Settings, store: Store, clock: Clock) -> dict[NotifyMethod, Notifier]:
    config = _mail_config(settings)
    return {} if config is None else {NotifyMethod.EMAIL: EmailNotifier(store, config, clock)}


def _mail_config(settings: Settings) -> MailConfig | None:
    mail = settings.mail
    if not mail.enabled:
        return None
    return MailConfig(
        host=mail.host, port=mail.port, security=mail.security, from_address=mail.from_address,
        username=mail.username,
        password=mail.password.get_secret_value() if mail.password else None,
        tls_context=None if mail.security == "none"
        else mail_tls_context(mail.ca_file, mail.verify),
        public_url=settings.http.public_url, link_valid_seconds=mail.link_valid_minutes * 60,
        timeout_seconds=mail.timeout_seconds,
    )  # fmt: skip


def _text_jobs(
    settings: Settings, store: Store, clock: Clock, engine: Engine, texter: SipTexter | None
) -> list[tuple[str, Coroutine[Any, Any, None]]]:
    """The task that reads replies to our texts, when texts are on, and the one that sends
    shift-change notices (texts or e-mails)."""
    notices = ShiftNoticeSender(
        store, clock, ShiftNoticeConfig(ua_config(settings).domain),
        texter=texter, mail=_mail_config(settings),
    )  # fmt: skip
    jobs: list[tuple[str, Coroutine[Any, Any, None]]] = [("shift notices", notices.run())]
    if texter is None:
        return jobs
    replies = TextReplies(
        store, clock, ua_config(settings).domain, engine.wake,
        reply_window_seconds=settings.text.reply_window_seconds,
        replies_per_minute=settings.text.replies_per_minute,
        ack_digit=engine_config(settings).ack_menu.ack_digit,
    )  # fmt: skip
    return [*jobs, ("text replies", replies.run(texter.replies))]


def _side_jobs(
    app: web.Application,
    config: IngestConfig,
    silencer: Silencer,
    watch: HeartbeatWatch,
    sender: StatusSender,
    node: ClusterNode | None,
) -> list[tuple[str, Coroutine[Any, Any, None]]]:
    """The tasks beside the engine: the silencer, the heartbeat watch, the status webhook
    sender, the IMAP poller. Among several nodes, the silencer, the sender and the poller
    run on one node at a time (docs/multi-node.md, "Single-writer jobs"); the heartbeat
    watch's mark is conditional, so every node may run it."""
    single: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
        ("silencer", silencer.run),
        ("status-webhooks", sender.run),
    ]
    if config.imap is not None:
        poller = ImapPoller(
            app[INTAKE], config.imap, config.email_rules,
            builtin_rules=config.builtin_email_parser, metrics=app[METRICS],
        )  # fmt: skip
        single.append(("imap", poller.run))
    jobs: list[tuple[str, Coroutine[Any, Any, None]]] = [("heartbeats", watch.run())]
    return jobs + [_single(node, name, job) for name, job in single]


def _single(
    node: ClusterNode | None, name: str, job: Callable[[], Coroutine[Any, Any, None]]
) -> tuple[str, Coroutine[Any, Any, None]]:
    """``job`` on one node of the database at a time (docs/multi-node.md, "Single-writer
    jobs"); directly when this serve is the only one (SQLite, ``single_engine``)."""
    return name, node.single_writer(name, job).run() if node is not None else job()


def _all(*wakes: Callable[[], None]) -> Callable[[], None]:
    """The API's wake-up: the engine, the silencer and the status webhook sender (an ack
    or a resolve through the API may have queued a silence request and notifications)."""

    def wake() -> None:
        for each in wakes:
            each()

    return wake


class _StallReport:
    """Where the loop watch's stalls go: the log, and the metrics once the app exists."""

    def __init__(self) -> None:
        self.metrics: IngestMetrics | None = None

    def __call__(self, stall: Stall) -> None:
        log_stall(stall)
        if self.metrics is not None:
            self.metrics.observe_stall(stall.kind.value, stall.lag)


def _add_web_routes(
    app: web.Application, settings: Settings, phone: Phone, speech: Speech
) -> TestCaller:
    """The routes that need the phone or the voice (test calls), and the web console."""
    test_caller = TestCaller(phone, speech, ua_config(settings).domain)
    add_test_call_route(app, test_caller)
    if settings.console.enabled:
        add_console(
            app, console_config(settings), settings=masked_dump(settings),
            test_call=test_caller.place_from_console, speech=speech,
        )  # fmt: skip
    return test_caller


def _self_test(
    settings: Settings, app: web.Application, phone: Phone, caller: TestCaller, clock: Clock
) -> SelfTest:
    """The self-test (test calls, registration watch), reported by /readyz and /metrics.
    Its listeners are the channels told when the phone path fails: the alert it opens
    reaches the status webhooks; a channel that must be told directly (e-mail) is added
    to ``listeners`` here."""
    config = selftest_config(settings)
    check_number(config, caller.domain)
    listeners: list[PhonePathListener] = [AlertOnFailure(app[INTAKE])] if config.alert else []
    selftest = SelfTest(config, clock, lambda: sip_state(phone), lend(caller), listeners)
    app[PHONE_PATH] = selftest.status
    return selftest


async def _watch_loop(settings: Settings, stack: AsyncExitStack) -> _StallReport:
    report = _StallReport()
    threshold_ms = settings.engine.loop_stall_ms
    if threshold_ms == 0:
        return report
    loop = asyncio.get_running_loop()
    if loop.get_debug():
        # PYTHONASYNCIODEBUG=1 (the tests run serve so): asyncio names every callback that
        # ran longer than the threshold, beside the watch's report of where it was stuck.
        loop.slow_callback_duration = threshold_ms / 1000
    watch = LoopWatch(threshold_ms / 1000, report)
    watch.start()
    stack.push_async_callback(watch.close)
    return report


class _Edges:
    """The listeners that take alerts in: closed first at shutdown, exactly once."""

    def __init__(self) -> None:
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def add(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            await closer()


async def _start_http(settings: Settings, app: web.Application, edges: _Edges) -> int:
    host, port = str(settings.http.host), settings.http.port
    try:
        runner, bound = await start_http(app, host, port)
    except OSError as exc:
        raise StartupError(
            f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc} ([http] port)"
        ) from None
    edges.add(runner.cleanup)
    return bound


async def _start_smtp(
    settings: Settings, app: web.Application, config: IngestConfig, edges: _Edges
) -> None:
    if not settings.smtp.enabled:
        return
    host, port = str(settings.smtp.host), settings.smtp.port
    handler = AlertSmtpHandler(
        app[INTAKE], config.smtp, config.email_rules,
        builtin_rules=config.builtin_email_parser, metrics=app[METRICS],
    )  # fmt: skip
    try:
        server = await start_smtp(handler, host, port, config.smtp)
    except OSError as exc:
        raise StartupError(
            f"cannot listen for SMTP on {host}:{port}: {exc.strerror or exc} ([smtp] port)"
        ) from None

    async def close_smtp() -> None:
        server.close()
        await server.wait_closed()

    edges.add(close_smtp)


def _sip_text(settings: Settings) -> str:
    sip = settings.sip
    return f"{sip.transport} {sip.local_host}:{sip.local_port}"


async def _check_languages(store: Store, speech: Speech) -> list[str]:
    rota = await store.load_rota()
    languages = sorted({person.language for person in rota.people} | {"en"})
    problems = speech.problems(languages)
    if problems:
        # A person whose language has no installed voice is a configuration error
        # reported at start-up, not a garbled call (docs/architecture.md §13).
        raise ConfigError(problems)
    return languages


async def _warm_phrases(speech: Speech, languages: list[str], settings: Settings) -> None:
    """Every fixed phrase of a call, in every language of the rota, into the speech cache:
    a call then never synthesizes while its callee listens (free once cached on disk)."""
    engine = settings.engine
    for language in languages:
        await warm_phrases(speech, language, engine.ack_digit, engine.repeat_digit)


async def _start_analysis(settings: Settings, stack: AsyncExitStack) -> AnalysisPool | None:
    """The worker processes that analyse the calls' received audio (docs/rx-workers.md),
    closed after the phones (the stack unwinds in reverse)."""
    workers = settings.media.analysis_workers
    if workers == 0:
        return None
    pool = AnalysisPool(workers)
    try:
        await pool.start()
    except OSError as exc:
        await pool.close()
        raise StartupError(f"cannot start the audio analysis workers: {exc}") from None
    stack.push_async_callback(pool.close)
    return pool


async def _start_phone(settings: Settings, stack: AsyncExitStack) -> Phone:
    ua = with_callin(settings, ua_config(settings))
    bind = sip_bind(settings)
    analysis = await _start_analysis(settings, stack)
    phone = Phone(
        ua, bind, media_config(settings), tls=sip_tls(settings), script=script_config(settings),
        dns=dns_config(settings),
    )  # fmt: skip
    phone.analysis = analysis
    phone.endpoint.tls_server = sip_tls_server(settings)
    try:
        await phone.start(register=ua.registrar is not None)
    except OSError as exc:
        raise StartupError(
            f"cannot use SIP {settings.sip.transport} port {bind[0]}:{bind[1]}: "
            f"{exc.strerror or exc} ([sip] local_host / local_port)"
        ) from None
    stack.push_async_callback(phone.stop)
    return phone


async def _start_phones(settings: Settings, stack: AsyncExitStack) -> tuple[Phone, Trunks]:
    """The ``[sip]`` phone, then the further trunks' (docs/sip-failover.md)."""
    phone = await _start_phone(settings, stack)
    try:
        return phone, await start_trunks(settings, phone, stack)
    except TrunkStartError as exc:
        raise StartupError(str(exc)) from None


async def _registration(phone: Phone) -> str:
    if phone.registration is None:
        return "not configured (calls go straight to their targets)"
    status = await phone.wait_registered(REGISTRATION_WAIT_SECONDS)
    if status is not None and status.state is RegistrationState.REGISTERED:
        return "registered"
    detail = "no answer yet" if status is None else f"{status.last_status} {status.last_reason}"
    log.warning(
        "SIP registration is not working (%s): /readyz says so; retrying", detail,
        extra={
            "registration_state": "no_answer" if status is None else status.state.value,
            "sip_status": None if status is None else status.last_status,
        },
    )  # fmt: skip
    return f"failing ({detail})"
