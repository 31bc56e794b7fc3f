"""The ``[text]`` and ``[mail]`` sections: texts by SIP MESSAGE and e-mail for notification
rules with method ``message`` or ``email``, and the replies that acknowledge
(docs/text-channels.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from voipalert.settings.sections import Port, _Section


class TextSettings(_Section):
    sip_messages: bool = Field(
        default=True,
        description="send SIP MESSAGE texts through the PBX for rules with method message "
        "(off: such rules fail with 'no message channel is configured')",
    )
    reply_window_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 86400,
        description="how long after a text a reply from its contact may acknowledge; other "
        "senders' texts get 403",
    )
    replies_per_minute: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="replies looked at per minute from one sender (beyond: ignored)",
    )


class MailSettings(_Section):
    enabled: bool = Field(default=False, description="send e-mail for rota rules with method email")
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: Port = 587
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (submission, port 587), tls (implicit, port 465) or none (a "
        "local relay only)",
    )
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(
        default="voipalert@localhost",
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}$",
        description="the From address; its domain is in the Message-ID replies are matched by",
    )
    ca_file: Path | None = Field(default=None, description="CA bundle for the server's certificate")
    verify: bool = True
    link_valid_minutes: int = Field(
        default=60, ge=5, le=7 * 1440, description="how long an acknowledgement link works"
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
