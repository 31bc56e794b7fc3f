"""Shift-change notices (docs/rota-edits.md): which are due, in the rota file, and sent once
over a real SMTP server (aiosmtpd with STARTTLS and AUTH, from tests/test_email_out.py),
even across a restart."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.stores import opened_store

# With the SMTP server fixtures (aiosmtpd with STARTTLS and AUTH, an openssl-made PKI).
from tests.test_email_out import Mailbox, mail_config, pki, smtp  # noqa: F401
from voipalert.app.shift_notices import ShiftNoticeConfig, ShiftNoticeSender
from voipalert.clock import FakeClock
from voipalert.domain.errors import RotaError
from voipalert.domain.oncall_view import Segment
from voipalert.domain.rota import PersonName, ScheduleName, ShiftNotice
from voipalert.domain.shift_notices import due_notices, notice_text, shifts
from voipalert.rotafile.dump import dump_rota
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store

# Daily hand-off at 09:00 Paris time between erin (e-mail notice 30 min before) and dan
# (a text notice 2 h before: no text channel in these tests).
ROTA = """
version: 1
people:
  - name: erin
    contacts: [{sip: "sip:erin@pbx.example.com"}, {email: erin@example.com, name: mail}]
    shift_notice: {contact: mail, before: 30m}
  - name: dan
    contacts: [{extension: "201"}]
    shift_notice: {contact: 1, before: 2h}
  - name: fay
    contacts: [{extension: "202"}]
schedules:
  - name: ops
    time_zone: Europe/Paris
    layers:
      - name: daily
        start: 2026-03-01
        handoff: "09:00"
        shift_length: 1
        shift_unit: days
        members: [erin, dan]
policies:
  - name: default
    steps: [{targets: [{schedule: ops}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""
PARIS = "Europe/Paris"
OPS = ScheduleName("ops")


def test_the_rota_file_takes_a_shift_notice_and_gives_it_back() -> None:
    rota = parse_rota(ROTA)
    erin, dan = rota.person("erin"), rota.person("dan")
    assert erin is not None and erin.shift_notice == ShiftNotice(1, 1800)
    assert dan is not None and dan.shift_notice == ShiftNotice(0, 7200)
    assert parse_rota(dump_rota(rota)) == rota


@pytest.mark.parametrize(
    ("notice", "why"),
    [
        ("{contact: 1, before: 30s}", "between 1m and 7d"),
        ("{contact: 1, before: 8d}", "between 1m and 7d"),
        ("{contact: 3, before: 1h}", "no contact number 3"),
        ("{contact: desk, before: 1h}", "no contact named 'desk'"),
        ("{before: 1h}", "contact"),
    ],
)
def test_bad_notices_are_refused_with_their_line(notice: str, why: str) -> None:
    text = ROTA.replace("{contact: 1, before: 2h}", notice)
    with pytest.raises(RotaError, match=why) as caught:
        parse_rota(text)
    assert str(caught.value).startswith("rota:9: people[1].shift_notice")


def test_a_phone_number_cannot_get_a_text_notice() -> None:
    text = ROTA.replace('contacts: [{extension: "201"}]', 'contacts: [{number: "+33612345678"}]')
    with pytest.raises(RotaError, match="a shift notice is a text"):
        parse_rota(text)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def test_consecutive_segments_of_one_person_are_one_shift() -> None:
    a, b = PersonName("a"), PersonName("b")
    joined = shifts(
        [
            Segment(a, _at(1, 8), _at(1, 9), "layer"),
            Segment(a, _at(1, 9), _at(1, 12), "override"),
            Segment(None, _at(1, 12), _at(1, 13), "gap"),
            Segment(b, _at(1, 13), _at(1, 20), "layer"),
        ]
    )
    assert [(s.person, s.start, s.end) for s in joined] == [
        (a, _at(1, 8), _at(1, 12)),
        (b, _at(1, 13), _at(1, 20)),
    ]


def test_due_from_before_until_the_start_and_never_twice() -> None:
    rota = parse_rota(ROTA)
    erin = PersonName("erin")
    seg = [Segment(erin, _at(10, 8), _at(11, 8), "layer")]  # 09:00 Paris (UTC+1)
    assert due_notices(rota, OPS, PARIS, seg, _at(10, 7, 29), ()) == []
    (notice,) = due_notices(rota, OPS, PARIS, seg, _at(10, 7, 30), ())
    assert notice.contact.address == "erin@example.com"
    assert due_notices(rota, OPS, PARIS, seg, _at(10, 7, 45), [notice.key]) == []
    assert due_notices(rota, OPS, PARIS, seg, _at(10, 8), ()) == []  # under way: too late
    assert "from Tue 10 Mar 09:00 to Wed 11 Mar 09:00 (Europe/Paris)" in notice_text(notice)


def test_nobody_is_told_without_asking() -> None:
    rota = parse_rota(ROTA)
    seg = [Segment(PersonName("fay"), _at(10, 8), _at(11, 8), "override")]
    assert due_notices(rota, OPS, PARIS, seg, _at(10, 7, 59), ()) == []


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Store, FakeClock]]:
    # 2026-03-28 08:00 UTC: erin's shift (her turn by the 2026-03-01 start) begins at 09:00
    # Paris, 08:00 UTC... the sender finds which day is whose from the rota itself.
    clock = FakeClock(datetime(2026, 3, 20, 6, 0, tzinfo=UTC))
    async with opened_store(tmp_path / "voipalert.db", clock, ROTA) as opened:
        yield opened, clock


async def test_notices_go_out_once_even_across_a_restart(
    store: tuple[Store, FakeClock],
    smtp: tuple[Mailbox, int, ssl.SSLContext],  # noqa: F811
) -> None:
    db, clock = store
    mailbox, port, tls = smtp
    config = ShiftNoticeConfig("pbx.example.com")

    def sender() -> ShiftNoticeSender:
        return ShiftNoticeSender(db, clock, config, texter=None, mail=mail_config(port, tls))

    running = sender()
    sent_to: list[str] = []
    # Walk two days in 10-minute steps: every hand-off gives one notice to the person taking
    # over (erin by e-mail, dan with no text channel: recorded, not sent).
    for _ in range(2 * 24 * 6):
        handled = [n.person for n in await running.check()]
        sent_to += handled
        if handled:
            # Restarted while the notice is still due: it is read back, not sent again.
            running = sender()
            assert await running.check() == []
        clock.advance(600)
    assert sent_to.count("erin") == 1 and sent_to.count("dan") == 1
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == "erin@example.com"
    assert "you are on call for ops" in message["Subject"]
    outcomes = {e.detail["person"]: e.detail["outcome"] for e in await db.audit_since(
        "shift_notice.sent", datetime(2026, 3, 1, tzinfo=UTC)
    )}  # fmt: skip
    assert outcomes == {"erin": "e-mail accepted", "dan": "no text channel"}


async def test_a_mail_server_that_refuses_is_recorded_not_retried(
    store: tuple[Store, FakeClock],
    smtp: tuple[Mailbox, int, ssl.SSLContext],  # noqa: F811
) -> None:
    db, clock = store
    mailbox, port, tls = smtp
    bad = mail_config(port, tls, password="wrong")
    sender = ShiftNoticeSender(db, clock, ShiftNoticeConfig("x"), texter=None, mail=bad)
    handled = []
    for _ in range(2 * 24 * 6):
        handled += await sender.check()
        clock.advance(timedelta(minutes=10).total_seconds())
    assert [n.person for n in handled].count(PersonName("erin")) == 1
    assert mailbox.messages == []
    entries = await db.audit_since("shift_notice.sent", datetime(2026, 3, 1, tzinfo=UTC))
    assert any(str(e.detail["outcome"]).startswith("e-mail not sent") for e in entries)
