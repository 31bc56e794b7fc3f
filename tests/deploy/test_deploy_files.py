"""The files in deploy/ agree with the code: every setting documented, the unit and the
container start ``serve`` the way install.sh installs it, the PBX snippets ask for what the
user agent offers."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from pydantic import BaseModel

from voipalert.settings import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def setting_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += setting_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_example_config_is_valid_and_documents_every_key() -> None:
    path = DEPLOY / "voipalert.example.toml"
    settings = load_settings(path, environ={})
    assert settings.sip.registrar == "sip:192.0.2.10:5060"
    text = path.read_text()
    missing = [key for key in setting_keys(Settings)
               if not re.search(rf"^#? ?{re.escape(key.rsplit('.', 1)[-1])} =", text, re.M)
               and f"[{key}]" not in text and f"[[{key}]]" not in text
               and f"[{key}." not in text]  # fmt: skip
    assert missing == [], f"keys not documented in {path.name}: {missing}"


def test_systemd_unit_runs_serve_hardened() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "voipalert.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith(
        "/opt/voipalert/.venv/bin/voipalert --log-format json serve"
    )
    assert service["User"] == "voipalert"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["KillSignal"] == "SIGTERM"
    install = (DEPLOY / "install.sh").read_text()
    assert ".venv/bin/python -m pip install" in install


def test_container_runs_serve() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert 'CMD ["serve"]' in text
    assert "/opt/voipalert/.venv/bin/voipalert" in text
    assert "STOPSIGNAL SIGTERM" in text


def test_pbx_snippets_match_what_the_user_agent_offers() -> None:
    from voipalert.codec import Codec

    offered = {codec.name for codec in Codec}
    pjsip = (DEPLOY / "asterisk" / "pjsip.conf").read_text()
    allow = re.search(r"^allow = (.+)$", pjsip, re.M)
    assert allow is not None
    names = {"alaw": "PCMA", "ulaw": "PCMU"}
    assert {names[c.strip()] for c in allow.group(1).split(",")} <= offered
    assert re.search(r"^dtmf_mode = rfc4733$", pjsip, re.M)
    assert re.search(r"^direct_media = no$", pjsip, re.M)
    assert re.search(r"^username = voipalert$", pjsip, re.M)
    freeswitch = (DEPLOY / "freeswitch" / "directory-voipalert.xml").read_text()
    assert 'name="dtmf-type" value="rfc2833"' in freeswitch
    assert 'value="PCMA,PCMU"' in freeswitch
