"""``POST /api/v1/test-call``: the running service places one test call (admin scope).

``voipalert call`` is what an administrator runs after a PBX change. While ``serve`` runs it
holds the SIP port and the registration, so a second process cannot bind the port; the
service places the call itself instead, with the phone, voice and registration that alerts
use, which is also the more faithful test. One test call at a time (409 while one is in
progress); none while the service stops (503). The answer is the call's report, once the
call has ended.

The route is added here, in the composition root, because only it holds the phone: the
HTTP package knows nothing of SIP (its layer is below ``calls``' users).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, replace
from typing import Annotated, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from voipalert.calls import CallReport, Phone
from voipalert.callscript import StopReason, StopRequest
from voipalert.ingest.app_keys import AUTH, CONFIG
from voipalert.ingest.http_errors import ApiError
from voipalert.ingest.json_http import read_model
from voipalert.notify.voice import SpokenPrompts, menu_fields, target_uri
from voipalert.sip.uri import SipUri
from voipalert.store import Scope
from voipalert.tts.speech import Speech

log = logging.getLogger("voipalert.test_call")
PATH: Final = "/api/v1/test-call"
MAX_TARGET_CHARS: Final = 256
MAX_MESSAGE_CHARS: Final = 600


class TestCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Annotated[str, Field(min_length=1, max_length=MAX_TARGET_CHARS)]
    message: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
    lang: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")] = "en"
    ring_timeout: Annotated[float, Field(ge=1, le=300)] = 30.0
    repetitions: Annotated[int, Field(ge=1, le=10)] = 3


def report_json(report: CallReport) -> dict[str, object]:
    data = asdict(report)
    data["outcome"] = report.outcome.value
    for key in ("ring_seconds", "talk_seconds"):
        if data[key] is not None:
            data[key] = round(data[key], 2)
    return data


class TestCallRefused(ValueError):
    """Why a test call is not placed, with the HTTP status the API answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TestCaller:
    """The running phone and voice, lent to one test call at a time."""

    def __init__(self, phone: Phone, speech: Speech, domain: str) -> None:
        self.phone = phone
        self.speech = speech
        self.domain = domain
        self._busy = asyncio.Lock()
        self._stopping = False
        self._stop: StopRequest | None = None

    def shutdown(self) -> None:
        """The service is stopping: no new test call; the one in progress says goodbye."""
        self._stopping = True
        if self._stop is not None:
            self._stop.request(StopReason.SHUTDOWN)

    async def handle(self, request: web.Request) -> web.Response:
        principal = await request.app[AUTH].authenticate(request, Scope.ADMIN)
        body = await read_model(request, TestCallIn, request.app[CONFIG].http.max_body_bytes)
        try:
            report = await self.place(body, f"token {principal.name}")
        except TestCallRefused as exc:
            raise ApiError(exc.status, str(exc)) from None
        return web.json_response({"target": body.target, **report_json(report)})

    async def place_from_console(
        self, target: str, message: str, lang: str, who: str
    ) -> dict[str, object]:
        """The web console's test call button (``console.admin_status``): the same call,
        its report as plain data; ``ValueError`` (``TestCallRefused``) says why not."""
        body = TestCallIn(target=target, message=message, lang=lang)
        return {"target": target, **report_json(await self.place(body, f"console user {who}"))}

    async def place(self, body: TestCallIn, who: str) -> CallReport:
        """One test call, once the previous one has ended; ``TestCallRefused`` when it
        cannot be placed (bad target, no voice for the language, busy, stopping)."""
        try:
            target = target_uri(body.target, self.domain)
        except ValueError as exc:
            raise TestCallRefused(422, f"cannot call {body.target!r}: {exc}") from None
        problems = self.speech.problems([body.lang])
        if problems:
            raise TestCallRefused(422, "; ".join(problems))
        if self._stopping:
            raise TestCallRefused(503, "the service is stopping")
        if self._busy.locked():
            raise TestCallRefused(409, "a test call is already in progress")
        async with self._busy:
            log.info("test call to %s requested by %s", target, who, extra={"requester": who})
            report = await self._call(target, body)
        log.info(
            "test call to %s: %s", target, report.outcome.value,
            extra={"sip_status": report.sip_status, "outcome": report.outcome.value},
        )  # fmt: skip
        return report

    async def _call(self, target: SipUri, body: TestCallIn) -> CallReport:
        script = self.phone.script
        menu = menu_fields(script.ack_digit, script.repeat_digit, body.lang)
        prompts = SpokenPrompts(self.speech, body.lang, {"summary": body.message}, menu)
        self._stop = StopRequest()
        try:
            return await self.phone.call(
                target,
                prompts,
                ring_timeout=body.ring_timeout,
                script=replace(self.phone.script, repetitions=body.repetitions),
                stop=self._stop,
            )
        finally:
            self._stop = None
            await prompts.close()


def add_test_call_route(app: web.Application, caller: TestCaller) -> None:
    app.router.add_post(PATH, caller.handle)
