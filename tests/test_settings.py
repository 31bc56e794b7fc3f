from __future__ import annotations

import os
from pathlib import Path

import pytest

from voipalert.codec import Codec
from voipalert.errors import ConfigError
from voipalert.settings import Settings, config_path, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests own their environment and working directory: no stray VOIPALERT_* or
    # ./voipalert.toml from the developer's shell.
    for name in list(os.environ):
        if name.startswith("VOIPALERT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings()
    assert settings.sip.registrar is None
    assert settings.http.port == 8080
    assert str(settings.http.host) == "127.0.0.1"
    assert settings.database.path == Path("voipalert.db")
    assert settings.tts.voice == "en_US-joe-medium"


def test_file_then_environment_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        '[sip]\nregistrar = "sip:pbx.example.com"\nusername = "alerts"\nlocal_port = 5070\n'
        '[media]\ncodecs = ["PCMA"]\n',
    )
    monkeypatch.setenv("VOIPALERT_SIP__REGISTRAR", "sip:127.0.0.1:5070")
    monkeypatch.setenv("VOIPALERT_HTTP__PORT", "9090")
    settings = load_settings(path)
    assert settings.sip.registrar == "sip:127.0.0.1:5070"  # environment wins
    assert settings.sip.username == "alerts"  # file value kept
    assert settings.sip.local_port == 5070
    assert settings.http.port == 9090
    assert settings.media.codecs == [Codec.PCMA]


def test_file_location_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path(None, {}) is None
    (tmp_path / "voipalert.toml").write_text("[http]\nport = 8181\n")
    assert config_path(None, {}) == Path("voipalert.toml")
    assert load_settings().http.port == 8181
    other = write(tmp_path, "[http]\nport = 8282\n")
    monkeypatch.setenv("VOIPALERT_CONFIG", str(other))
    assert load_settings().http.port == 8282
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[http]\nport = 8383\n")
    assert load_settings(explicit).http.port == 8383


def test_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPALERT_SIP__USERNAME", "alerts")
    monkeypatch.setenv("VOIPALERT_SIP__PASSWORD", "hunter2-very-secret")
    settings = load_settings()
    assert settings.sip.password is not None
    assert settings.sip.password.get_secret_value() == "hunter2-very-secret"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("VOIPALERT_SIP__LOCAL_PORT", "70000", "sip.local_port"),
        ("VOIPALERT_SIP__LOCAL_PORT", "abc", "sip.local_port"),
        ("VOIPALERT_SIP__REGISTRAR", "http://pbx", "sip.registrar"),
        ("VOIPALERT_SIP__REGISTRAR", "sip:pbx:99999", "sip.registrar"),
        ("VOIPALERT_SIP__TRANSPORT", "sctp", "sip.transport"),
        ("VOIPALERT_HTTP__PORT", "0", "http.port"),
        ("VOIPALERT_MEDIA__CODECS", '["G729"]', "media.codecs"),
        ("VOIPALERT_SIP__ADVERTISED_HOST", "0.0.0.0", "sip"),
        ("VOIPALERT_SIP__DNS_SERVERS", '["ns.example.com"]', "sip.dns_servers"),
        ("VOIPALERT_SIP__DNS_SERVERS", '["127.0.0.1:0"]', "sip.dns_servers"),
        ("VOIPALERT_SIP__DNS_SERVERS", '["[::1]5353"]', "sip.dns_servers"),
    ],
)
def test_bad_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.startswith(expected), problem
    assert "\n" not in problem


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\nregistar = "sip:pbx"\n')
    with pytest.raises(ConfigError, match=r"sip\.registar .*unknown key"):
        load_settings(path)


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip]\nregistrar = sip:pbx\n")
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_rtp_range_needs_a_pair() -> None:
    with pytest.raises(ValueError, match="rtp_port_max"):
        Settings(media={"rtp_port_min": 20000, "rtp_port_max": 20000})  # type: ignore[arg-type]


def test_password_without_username(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPALERT_SIP__PASSWORD", "x")
    with pytest.raises(ConfigError, match="username"):
        load_settings()


# ---------------------------------------------------------------- trigger side


INGEST_TOML = """
[http]
max_body_bytes = 65536
require_signature_timestamp = true
default_severity = "error"

[smtp]
allowed_senders = ["@monitor.example.org"]
recipients = ["Oncall@Alerts.example.org"]
allowed_networks = ["10.0.0.0/8"]

[[smtp.rules]]
name = "backup"
subject = "^Backup job (?P<job>\\\\S+) FAILED"
dedup_key = "backup/{job}"
team = "storage"

[[smtp.rules]]
name = "nagios"
sender = "^nagios@"
monitoring = true
team = "ops"

[imap]
enabled = true
host = "imap.example.org"
username = "alerts"
password = "imap-secret"
move_to = "Processed"

[[routes]]
name = "db"
team = "dba"
policy = "dba-default"
subject = "(?i)database"
labels = { env = "prod" }

[[routes]]
name = "rest"
team = "ops"
default = true

[hooks.generic.uptime]
summary = "monitor.name"
dedup_key = "monitor.id"
resolved = "heartbeat.status"
resolved_values = ["1", "UP"]
"""


def test_trigger_sections_map_onto_the_ingest_config(tmp_path: Path) -> None:
    from voipalert.app.config import ingest_config
    from voipalert.domain.alert import Severity

    config = ingest_config(load_settings(write(tmp_path, INGEST_TOML)))
    assert config.http.max_body_bytes == 65536 and config.http.require_signature_timestamp
    assert config.http.default_severity is Severity.ERROR
    backup, nagios = config.email_rules
    assert backup.subject is not None and backup.subject.search("Backup job vm FAILED")
    assert backup.dedup_key == "backup/{job}" and backup.team == "storage"
    assert nagios.monitoring and nagios.sender is not None
    assert config.smtp.recipients == ("oncall@alerts.example.org",)
    assert [str(n) for n in config.smtp.allowed_networks] == ["10.0.0.0/8"]
    assert config.imap is not None and config.imap.password == "imap-secret"
    assert config.imap.move_to == "Processed"
    db, rest = config.routes
    assert db.labels == (("env", "prod"),) and db.subject == "(?i)database"
    assert rest.default and rest.policy is None
    uptime = config.http.generic_hooks["uptime"]
    assert uptime.source == "generic:uptime" and uptime.resolved_values == ("1", "up")


def test_trigger_defaults() -> None:
    from voipalert.app.config import ingest_config

    config = ingest_config(load_settings())
    assert config.imap is None and config.routes == () and config.email_rules == ()
    assert [str(n) for n in config.smtp.allowed_networks] == ["127.0.0.0/8", "::1/128"]
    assert config.http.signature_headers[0] == "X-Voipalert-Signature"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[smtp.rules]]\nname = "x"\nsubject = "(unclosed"\n', "smtp.rules.0.subject"),
        ('[[routes]]\nname = "x"\n', "routes.0"),
        ('[[routes]]\nname = "x"\nteam = "t"\nsubject = "*"\n', "routes.0.subject"),
        ("[imap]\nenabled = true\n", "imap"),
        ('[hooks.generic."bad name"]\nsummary = "a"\n', "hooks.generic"),
        ('[hooks.generic.x]\nseverity = "s"\n', "hooks.generic.x.summary"),
        ("[http]\nmax_body_bytes = 10\n", "http.max_body_bytes"),
        ('[http]\nsignature_headers = ["Bad Header"]\n', "http.signature_headers.0"),
        ('[smtp]\nallowed_networks = ["10.0.0.1/33"]\n', "smtp.allowed_networks.0"),
    ],
)
def test_trigger_config_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert any(problem.startswith(key) for problem in caught.value.problems), caught.value.problems
    assert "imap-secret" not in str(caught.value)


def test_dns_servers_map_onto_the_resolver_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from voipalert.app.config import dns_config

    assert dns_config(load_settings()).servers == ()  # empty: /etc/resolv.conf
    monkeypatch.setenv(
        "VOIPALERT_SIP__DNS_SERVERS", '["192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:54"]'
    )
    assert dns_config(load_settings()).servers == (
        ("192.0.2.53", 53), ("127.0.0.1", 5353), ("2001:db8::53", 54),
    )  # fmt: skip


def test_keepalive_seconds_maps_onto_the_user_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    from voipalert.app.config import ua_config

    assert ua_config(load_settings()).keepalive_seconds == 0.0  # off by default
    monkeypatch.setenv("VOIPALERT_SIP__KEEPALIVE_SECONDS", "25")
    assert ua_config(load_settings()).keepalive_seconds == 25.0
    monkeypatch.setenv("VOIPALERT_SIP__KEEPALIVE_SECONDS", "-1")
    with pytest.raises(ConfigError, match="keepalive_seconds"):
        load_settings()


def test_100rel_and_session_timers_map_onto_the_user_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voipalert.app.config import ua_config

    config = ua_config(load_settings())
    assert config.reliable_provisionals and config.session_timers  # on by default
    monkeypatch.setenv("VOIPALERT_SIP__RELIABLE_PROVISIONALS", "false")
    monkeypatch.setenv("VOIPALERT_SIP__SESSION_TIMERS", "false")
    config = ua_config(load_settings())
    assert not config.reliable_provisionals and not config.session_timers
    monkeypatch.setenv("VOIPALERT_SIP__SESSION_TIMERS", "sometimes")
    with pytest.raises(ConfigError, match="session_timers"):
        load_settings()
