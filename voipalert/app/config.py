"""Each component's own config, built from the settings.

Cores never see pydantic settings (STYLE.md §3); this module maps them.
"""

from __future__ import annotations

import ipaddress
import ssl

from voipalert import __version__
from voipalert.calls import MediaConfig
from voipalert.callscript import ScriptConfig
from voipalert.engine import EngineConfig
from voipalert.net.sip_transport import client_tls_context
from voipalert.notify import AckMenu
from voipalert.settings import Settings
from voipalert.sip.config import UAConfig
from voipalert.sip.sdp import Codec
from voipalert.sip.uri import SipUri
from voipalert.store.db import StoreConfig


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
        user_agent=f"voipalert/{__version__}",
        trusted_hosts=frozenset(trusted) if trusted and len(trusted) == len(peers) else None,
    )


def sip_bind(settings: Settings) -> tuple[str, int]:
    return (str(settings.sip.local_host), settings.sip.local_port)


def sip_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.sip.transport != "tls":
        return None
    return client_tls_context(settings.sip.tls_ca_file, settings.sip.tls_verify)


def media_config(settings: Settings) -> MediaConfig:
    sip, media = settings.sip, settings.media
    return MediaConfig(
        bind_host=str(sip.local_host),
        advertised_host=str(sip.advertised_host or sip.local_host),
        port_min=media.rtp_port_min,
        port_max=media.rtp_port_max,
        codecs=tuple(Codec[name] for name in media.codecs),
        telephone_event_pt=media.telephone_event_payload_type,
        latching=media.latching,
        inband_dtmf=media.inband_dtmf,
    )


def engine_config(settings: Settings) -> EngineConfig:
    engine = settings.engine
    return EngineConfig(
        max_concurrent_calls=engine.max_concurrent_calls,
        tick_timeout_seconds=engine.tick_timeout_seconds,
        slow_tick_seconds=engine.slow_tick_seconds,
        idle_poll_seconds=engine.idle_poll_seconds,
        mass_ring_timeout_seconds=engine.mass_ring_timeout_seconds,
        ack_menu=AckMenu(ack_digit=engine.ack_digit),
    )


def store_config(settings: Settings) -> StoreConfig:
    database = settings.database
    return StoreConfig(busy_timeout_ms=database.busy_timeout_ms, synchronous=database.synchronous)


def script_config(settings: Settings) -> ScriptConfig:
    return ScriptConfig(
        ack_digit=settings.engine.ack_digit,
        repetitions=settings.call.repetitions,
        pause_seconds=settings.call.pause_seconds,
    )
