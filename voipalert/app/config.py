"""Each component's own config, built from the settings.

Cores never see pydantic settings (docs/architecture.md §3); this module maps them.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, replace

from voipalert import __version__
from voipalert.app.selftest import SelfTestConfig
from voipalert.app.store_config import public_url
from voipalert.calls import MediaConfig
from voipalert.callscript import ScriptConfig
from voipalert.console.security import ConsoleConfig
from voipalert.domain.rota import PolicyName, Route, TeamName
from voipalert.engine import EngineConfig
from voipalert.errors import ConfigError
from voipalert.ingest.config import (
    AlertmanagerHook,
    HttpConfig,
    ImapConfig,
    IngestConfig,
    OutboundConfig,
    RetryPolicy,
    SilencerConfig,
    SmtpConfig,
    StatusTarget,
)
from voipalert.ingest.convert import Grouping
from voipalert.ingest.email_parse import EmailRule, RuleAction
from voipalert.ingest.mapping import GenericMapping
from voipalert.net.sip_dns import DnsConfig
from voipalert.net.sip_transport import client_tls_context, server_tls_context
from voipalert.notify import AckMenu
from voipalert.settings import (
    AlertmanagerHookSettings,
    EmailRuleSettings,
    GenericHookSettings,
    ImapSettings,
    RouteSettings,
    Settings,
)
from voipalert.settings.sections import duration_seconds
from voipalert.sip.config import UAConfig
from voipalert.sip.locate import parse_name_server
from voipalert.sip.sdes import SrtpPolicy
from voipalert.sip.uri import SipUri


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def ua_config(settings: Settings) -> UAConfig:
    """The user agent's config: our identity, where we listen and whom we trust."""
    sip = settings.sip
    registrar = SipUri.parse(sip.registrar, "[sip] registrar") if sip.registrar else None
    proxy = SipUri.parse(sip.outbound_proxy, "[sip] outbound_proxy") if sip.outbound_proxy else None
    advertised = str(sip.advertised_host or sip.local_host)
    domain = sip.domain or (registrar.host if registrar else advertised)
    # Out-of-dialog requests are answered only from the PBX we register with (its proxy
    # included); without a registrar anyone may probe us (and is rate-limited).
    peers = {u.host for u in (registrar, proxy) if u is not None}
    trusted = {ip for host in peers if (ip := _ip_literal(host)) is not None}
    return UAConfig(
        user=sip.username or "voipalert",
        domain=domain,
        local_host=advertised,
        local_port=sip.local_port,
        transport=sip.transport,
        display_name=sip.display_name or None,
        auth_username=sip.auth_username,
        password=sip.password.get_secret_value() if sip.password else None,
        registrar=registrar,
        outbound_proxy=proxy,
        register_expires=sip.register_expires,
        keepalive_seconds=float(sip.keepalive_seconds),
        reliable_provisionals=sip.reliable_provisionals,
        session_timers=sip.session_timers,
        max_calls_per_second=sip.max_calls_per_second,
        user_agent=f"voipalert/{__version__}",
        trusted_hosts=frozenset(trusted) if trusted and len(trusted) == len(peers) else None,
    )


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """One further trunk's user agent (``[[sip.trunk]]``, docs/sip-failover.md)."""

    name: str
    ua: UAConfig
    bind: tuple[str, int]
    register: bool


def trunk_configs(settings: Settings) -> list[TrunkConfig]:
    """The trunks after ``[sip]`` itself: its transport, addresses and timers, their own
    port, registrar, proxy and credentials."""
    sip, base = settings.sip, ua_config(settings)
    configs = []
    for trunk in sip.trunk:
        what = f"[[sip.trunk]] {trunk.name}"
        registrar = SipUri.parse(trunk.registrar, f"{what} registrar") if trunk.registrar else None
        proxy = (
            SipUri.parse(trunk.outbound_proxy, f"{what} outbound_proxy")
            if trunk.outbound_proxy
            else None
        )
        route = registrar or proxy
        domain = trunk.domain or (route.host if route is not None else base.domain)
        peers = {u.host for u in (registrar, proxy) if u is not None}
        trusted = {ip for host in peers if (ip := _ip_literal(host)) is not None}
        ua = replace(
            base,
            user=trunk.username or "voipalert",
            domain=domain,
            local_port=trunk.local_port,
            auth_username=trunk.auth_username,
            password=trunk.password.get_secret_value() if trunk.password else None,
            registrar=registrar,
            outbound_proxy=proxy,
            trusted_hosts=frozenset(trusted) if trusted and len(trusted) == len(peers) else None,
            max_calls_per_second=(
                base.max_calls_per_second
                if trunk.max_calls_per_second is None
                else trunk.max_calls_per_second
            ),
        )
        bind = (str(sip.local_host), trunk.local_port)
        configs.append(TrunkConfig(trunk.name, ua, bind, trunk.registers and registrar is not None))
    return configs


def sip_bind(settings: Settings) -> tuple[str, int]:
    return (str(settings.sip.local_host), settings.sip.local_port)


def dns_config(settings: Settings) -> DnsConfig:
    """Name servers for RFC 3263 lookups (empty: the system's resolv.conf)."""
    return DnsConfig(servers=tuple(parse_name_server(s) for s in settings.sip.dns_servers))


def sip_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.sip.transport != "tls":
        return None
    return client_tls_context(settings.sip.tls_ca_file, settings.sip.tls_verify)


def sip_tls_server(settings: Settings) -> ssl.SSLContext | None:
    """The TLS listener's context (``[sip] tls_listen``); a certificate or key that cannot
    be loaded is a configuration error, named, at start."""
    sip = settings.sip
    if not sip.tls_listen or sip.tls_cert_file is None or sip.tls_key_file is None:
        return None
    try:
        return server_tls_context(sip.tls_cert_file, sip.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [
                f"[sip] tls_cert_file/tls_key_file ({sip.tls_cert_file}, {sip.tls_key_file}) "
                f"cannot be loaded: {exc}"
            ]
        ) from None


def media_config(settings: Settings) -> MediaConfig:
    sip, media = settings.sip, settings.media
    return MediaConfig(
        bind_host=str(sip.local_host),
        advertised_host=str(sip.advertised_host or sip.local_host),
        port_min=media.rtp_port_min,
        port_max=media.rtp_port_max,
        codecs=tuple(media.codecs),
        telephone_event_pt=media.telephone_event_payload_type,
        latching=media.latching,
        inband_dtmf=media.inband_dtmf,
        echo_canceller=media.echo_canceller,
        srtp=SrtpPolicy(media.srtp),
    )


def engine_config(settings: Settings) -> EngineConfig:
    engine = settings.engine
    return EngineConfig(
        max_concurrent_calls=engine.max_concurrent_calls,
        tick_timeout_seconds=engine.tick_timeout_seconds,
        slow_tick_seconds=engine.slow_tick_seconds,
        idle_poll_seconds=engine.idle_poll_seconds,
        mass_ring_timeout_seconds=engine.mass_ring_timeout_seconds,
        ack_menu=AckMenu(ack_digit=engine.ack_digit, repeat_digit=engine.repeat_digit),
    )


def console_config(settings: Settings) -> ConsoleConfig:
    console = settings.console
    return ConsoleConfig(
        session_hours=console.session_hours,
        login_attempts=console.login_attempts,
        login_window_seconds=console.login_window_seconds,
        lockout_failures=console.lockout_failures,
        lockout_seconds=console.lockout_seconds,
    )


def script_config(settings: Settings) -> ScriptConfig:
    return ScriptConfig(
        ack_digit=settings.engine.ack_digit,
        repeat_digit=settings.engine.repeat_digit,
        repetitions=settings.call.repetitions,
        pause_seconds=settings.call.pause_seconds,
        leave_voicemail=settings.call.leave_voicemail,
    )


# ---------------------------------------------------------------- triggers


def _email_rule(rule: EmailRuleSettings) -> EmailRule:
    def compiled(pattern: str | None) -> re.Pattern[str] | None:
        return re.compile(pattern) if pattern is not None else None

    return EmailRule(
        name=rule.name,
        sender=compiled(rule.sender),
        recipient=compiled(rule.recipient),
        subject=compiled(rule.subject),
        body=compiled(rule.body),
        action=RuleAction(rule.action),
        severity=rule.severity,
        summary=rule.summary,
        dedup_key=rule.dedup_key,
        team=rule.team,
        policy=rule.policy,
        source=rule.source,
        monitoring=rule.monitoring,
    )


def _route(route: RouteSettings) -> Route:
    return Route(
        name=route.name,
        policy=PolicyName(route.policy) if route.policy else None,
        team=TeamName(route.team) if route.team else None,
        source=route.source,
        severity=route.severity.value if route.severity else None,
        subject=route.subject,
        labels=tuple(sorted(route.labels.items())),
        default=route.default,
    )


def _generic(name: str, hook: GenericHookSettings) -> GenericMapping:
    return GenericMapping(
        summary=hook.summary,
        severity=hook.severity,
        dedup_key=hook.dedup_key,
        resolved=hook.resolved,
        resolved_values=tuple(v.lower() for v in hook.resolved_values),
        labels=hook.labels,
        source=hook.source or f"generic:{name}",
        default_severity=hook.default_severity,
        team=hook.team,
        policy=hook.policy,
    )


def _alertmanager(hook: AlertmanagerHookSettings, base: str) -> AlertmanagerHook:
    return AlertmanagerHook(
        grouping=Grouping(hook.grouping),
        receiver_grouping=tuple(
            (receiver, Grouping(grouping)) for receiver, grouping in hook.receiver_grouping.items()
        ),
        url=hook.url,
        allowed_urls=tuple(hook.allowed_urls),
        silence_seconds=hook.silence_minutes * 60,
        alert_url=base,
    )


def silencer_config(settings: Settings) -> SilencerConfig:
    return SilencerConfig(
        poll_seconds=settings.hooks.silence_poll_seconds,
        max_tries=settings.hooks.silence_max_tries,
        reconcile_seconds=settings.hooks.silence_check_seconds,
    )


def outbound_config(settings: Settings) -> OutboundConfig:
    """The status webhook sender's targets and pace (docs/outbound.md)."""
    out = settings.outbound
    targets = tuple(
        StatusTarget(
            name=name,
            url=target.url.get_secret_value(),
            format=target.format,
            events=frozenset(target.events),
            secret=target.secret.get_secret_value().encode() if target.secret else None,
        )
        for name, target in sorted(out.targets.items())
    )
    # The console's page of the alert when the console is served, else the API's.
    path = "/alerts" if settings.console.enabled else "/api/v1/alerts"
    return OutboundConfig(
        targets=targets,
        retry=RetryPolicy(
            max_tries=out.max_tries,
            first_seconds=out.backoff_first_seconds,
            max_seconds=max(out.backoff_first_seconds, out.backoff_max_seconds),
            jitter=0.5,
        ),
        timeout_seconds=out.timeout_seconds,
        poll_seconds=out.poll_seconds,
        alert_url=public_url(settings) + path,
    )


def selftest_config(settings: Settings) -> SelfTestConfig:
    """The self-test's number and pace (docs/outbound.md)."""
    test = settings.selftest
    return SelfTestConfig(
        number=test.number,
        every_seconds=float(duration_seconds(test.every)),
        ring_timeout_seconds=test.ring_timeout_seconds,
        message=test.message,
        language=test.language,
        require_ack=test.require_ack,
        registration_grace_seconds=test.registration_grace_seconds,
        check_seconds=test.check_seconds,
        alert=test.alert,
    )


def _imap(imap: ImapSettings) -> ImapConfig | None:
    if not imap.enabled or imap.username is None or imap.password is None:
        return None
    return ImapConfig(
        host=imap.host,
        port=imap.port,
        username=imap.username,
        password=imap.password.get_secret_value(),
        tls=imap.tls,
        mailbox=imap.mailbox,
        poll_interval_seconds=imap.poll_interval_seconds,
        move_to=imap.move_to,
        allowed_senders=tuple(imap.allowed_senders),
        max_message_bytes=imap.max_message_bytes,
    )


def ingest_config(settings: Settings) -> IngestConfig:
    """The trigger side's configuration (HTTP API, webhooks, e-mail, routes)."""
    http, smtp = settings.http, settings.smtp
    return IngestConfig(
        ack_digit=settings.engine.ack_digit,
        routes=tuple(_route(r) for r in settings.routes),
        http=HttpConfig(
            max_body_bytes=http.max_body_bytes,
            signature_headers=tuple(http.signature_headers),
            timestamp_headers=tuple(http.timestamp_headers),
            signature_max_age_seconds=http.signature_max_age_seconds,
            require_signature_timestamp=http.require_signature_timestamp,
            token_cache_seconds=http.token_cache_seconds,
            generic_hooks={n: _generic(n, h) for n, h in settings.hooks.generic.items()},
            alertmanager_hooks={
                n: _alertmanager(h, public_url(settings))
                for n, h in settings.hooks.alertmanager.items()
            },
            default_severity=http.default_severity,
            heartbeat_beats_per_minute=settings.heartbeat.beats_per_minute,
        ),
        email_rules=tuple(_email_rule(r) for r in smtp.rules),
        builtin_email_parser=smtp.builtin_rules,
        smtp=SmtpConfig(
            hostname=smtp.hostname,
            max_message_bytes=smtp.max_message_bytes,
            allowed_networks=tuple(smtp.allowed_networks),
            allowed_senders=tuple(smtp.allowed_senders),
            recipients=tuple(r.lower() for r in smtp.recipients),
        ),
        imap=_imap(settings.imap),
    )
