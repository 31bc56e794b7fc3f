"""Settings that would break or forge a protocol line, or leak a secret, are refused at
``config check`` time with the key named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.test_main import run
from voipalert.app.config import sip_tls_server
from voipalert.errors import ConfigError
from voipalert.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("VOIPALERT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("sip", "display_name", "Alerts\\r\\nX-Injected: 1"),
        ("sip", "display_name", "Alerts\\u0000"),
        ("sip", "username", "alerts\\n"),
        ("sip", "auth_username", "a\\rb"),
        ("sip", "domain", "example.com\\r\\nVia: evil"),
        ("sip", "password", "pw\\r\\nX: y"),
        ("sip", "registrar", "sip:pbx.example.com;transport=udp\\u0000"),
        ("smtp", "hostname", "voipalert\\r\\n250 fake"),
        ("imap", "mailbox", "INBOX\\r\\nA1 DELETE INBOX"),
        ("tts", "voice", "joe\\u001b[2J"),
    ],
)
def test_control_characters_are_refused_with_the_key_named(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    extra = 'username = "u"\n' if key == "password" else ""
    path = write(tmp_path, f'[{section}]\n{extra}{key} = "{value}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert f"{section}" in text and "control character" in text, text
    assert "X: y" not in text  # a secret's value is never echoed


def test_a_display_name_with_crlf_fails_config_check_not_serve(tmp_path: Path) -> None:
    write(tmp_path, '[sip]\ndisplay_name = "Alerts\\r\\nX-Injected: yes"\n')
    result = run("--config", str(tmp_path / "conf.toml"), "config", "check", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (
        "sip.display_name" in result.stderr
        and "control character" in result.stderr
        and "Traceback" not in result.stderr
    )
    write(tmp_path, '[sip]\ndisplay_name = "Alerts on call"\n')
    ok = run("--config", str(tmp_path / "conf.toml"), "config", "check", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("key", ["registrar", "outbound_proxy"])
def test_a_password_inside_a_sip_uri_is_refused(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f'[sip]\n{key} = "sip:alerts:hunter2@pbx.example.com:5060"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert key in text and "password" in text and "hunter2" not in text


def test_legitimate_uris_and_names_still_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sip]\nregistrar = "sip:alerts@pbx.example.com:5060;transport=tcp"\n'
        'display_name = "Ops Alerts (é)"\nusername = "alerts"\ndomain = "example.com"\n'
        '[smtp]\n[[smtp.rules]]\nname = "r"\nsubject = "(?i)^PROBLEM\\\\s"\n',
    )
    settings = load_settings(path)
    assert settings.sip.registrar == "sip:alerts@pbx.example.com:5060;transport=tcp"
    assert settings.http.require_signature_timestamp is True
    assert "X-Grafana-Alerting-Timestamp" in settings.http.timestamp_headers


def test_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPALERT_SIP__DISPLAY_NAME", "Alerts\nX: 1")
    with pytest.raises(ConfigError, match="display_name"):
        load_settings()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("policy", ["optional", "required"])
def test_srtp_needs_sip_over_tls(tmp_path: Path, transport: str, policy: str) -> None:
    # SDES keys travel in the SDP: refused at configuration time, never sent in clear.
    path = write(tmp_path, f'[sip]\ntransport = "{transport}"\n[media]\nsrtp = "{policy}"\n')
    with pytest.raises(ConfigError, match="needs \\[sip\\] transport = 'tls'"):
        load_settings(path)


def test_srtp_over_tls_loads(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\ntransport = "tls"\n[media]\nsrtp = "required"\n')
    assert load_settings(path).media.srtp == "required"
    with pytest.raises(ConfigError, match="srtp"):
        load_settings(write(tmp_path, '[media]\nsrtp = "maybe"\n'))


def test_tls_listen_needs_tls_and_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_listen needs transport = 'tls'"):
        load_settings(write(tmp_path, "[sip]\ntls_listen = true\n"))
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file"):
        load_settings(write(tmp_path, '[sip]\ntransport = "tls"\ntls_listen = true\n'))


def test_an_unreadable_certificate_is_a_named_config_error(tmp_path: Path) -> None:

    (tmp_path / "cert.pem").write_text("not a certificate\n")
    settings = load_settings(
        write(
            tmp_path,
            '[sip]\ntransport = "tls"\ntls_listen = true\n'
            f'tls_cert_file = "{tmp_path / "cert.pem"}"\ntls_key_file = "{tmp_path / "k.pem"}"\n',
        )
    )
    with pytest.raises(ConfigError, match=r"tls_cert_file/tls_key_file .* cannot be loaded"):
        sip_tls_server(settings)
