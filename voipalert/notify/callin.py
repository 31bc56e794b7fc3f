"""Call-in acknowledgement (docs/call-in.md): a person dials voipalert, is identified by
the caller ID and/or a PIN, hears their open alerts and acknowledges, resolves or skips
each by key. The menu itself is the sans-IO ``voipalert.callin_menu``; this is its adapter:
the phone's ``IncomingSession``, the store, the speech and the engine's wake-up.

* Identity: the ``P-Asserted-Identity`` a trusted proxy put there, else the From URI,
  matched to the contacts of the people in the rota (an extension or a number by its user
  part, a SIP contact by user and host). A PIN is asked when ``pin_required``, or when the
  caller ID matches nobody (then the PIN alone names the person, if exactly one has it).
  A caller nobody knows, when no one has a PIN, hears "this number is not known" and is
  hung up on.
* Brute force: at most ``max_pin_attempts`` per call; every wrong PIN is stored against
  the caller and, when known, the person; a caller or person with ``max_failures_per_hour``
  in the last hour is refused before the answer (603), and a call that reaches the limit
  is ended with an audit line (``callin.locked_out``).
* An acknowledgement is ``Store.ack_alert(alert, person, "call-in")`` and a wake-up of the
  engine: the same path as an acknowledgement by the API or a text reply, so the audit
  trail, status webhooks and Alertmanager silences follow, and the engine cancels its calls
  in flight for that alert (an outbound call to the same person included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from voipalert.callin_menu import (
    ALERT_PREFIX,
    GOODBYE,
    Acknowledge,
    Action,
    CallinMenu,
    HangUp,
    Identify,
    MenuConfig,
    Play,
    Resolve,
    alert_prompt,
)
from voipalert.calls import IncomingSession, Phone
from voipalert.clock import Clock
from voipalert.domain.alert import Alert
from voipalert.domain.rota import Contact, ContactKind, Rota
from voipalert.media.dtmf import Digit
from voipalert.media.playout import PlayEnd
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import CallEnded
from voipalert.sip.uri import SipUri
from voipalert.store import Store
from voipalert.tts.prompt import Prompt

log = logging.getLogger("voipalert.callin")

UNKNOWN: Final = "callin_unknown"
PROMPT_GAP_SECONDS: Final = 0.25
MESSAGE: Final = "message"
PREFETCH_ALERTS: Final = 2


class Phrases(Protocol):
    """What the menu needs of the speech engine (``tts.speech.Speech`` is one)."""

    async def phrase(self, key: str, *, language: str, **fields: object) -> Prompt: ...


@dataclass(frozen=True, slots=True)
class CallinConfig:
    pin_required: bool = False
    max_failures_per_hour: int = 10
    language: str = "en"
    """Said before the caller is known (and to callers nobody knows)."""
    menu: MenuConfig = field(default_factory=MenuConfig)


def caller_key(uri: SipUri) -> str:
    user = uri.unescaped_user or ""
    return f"{user}@{uri.host.lower()}"


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit() or c in "*#")


def contact_matches(contact: Contact, caller: SipUri) -> bool:
    """Whether ``caller`` (the asserted or From URI) is this contact: an extension or a
    number by the user part (the host is the PBX's, whatever the contact's domain), a SIP
    contact by user and host."""
    user = caller.unescaped_user or ""
    if contact.kind in (ContactKind.EXTENSION, ContactKind.NUMBER):
        wanted = _digits(contact.address).lstrip("+")
        return bool(wanted) and _digits(user).lstrip("+") == wanted
    if contact.kind is ContactKind.SIP:
        try:
            uri = SipUri.parse(contact.address.strip(), "contact")
        except RemoteProtocolError:
            return False
        return caller_key(uri) == caller_key(caller)
    return False


def person_for(rota: Rota, caller: SipUri | None) -> str | None:
    """The one person whose contact the caller ID is (two people sharing it: nobody)."""
    if caller is None:
        return None
    found = {p.name for p in rota.people for c in p.contacts if contact_matches(c, caller)}
    return next(iter(found)) if len(found) == 1 else None


class CallinService:
    """Attach to the phone with ``attach()``; every call made to us runs as a task of its
    own, at most ``UAConfig.max_incoming_calls`` at once (the agent refuses the others)."""

    def __init__(
        self,
        store: Store,
        speech: Phrases,
        clock: Clock,
        wake: Callable[[], None],
        config: CallinConfig,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.speech = speech
        self.clock = clock
        self.wake = wake
        self.config = config
        self.observe = observe or (lambda event: None)
        """Told each event of a call (``voipalert_callin_events_total`` in /metrics)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, phone: Phone) -> None:
        phone.on_incoming = self.take

    def take(self, session: IncomingSession) -> None:
        task = asyncio.create_task(self.run(session), name=f"call-in {session.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self, session: IncomingSession) -> None:
        call = _Call(self, session)
        try:
            await call.run()
        except Exception:
            log.exception("call-in %s failed", session.call_id)
        finally:
            call.close_renders()
            await session.close()


class _Call:
    def __init__(self, service: CallinService, session: IncomingSession) -> None:
        self.service = service
        self.store = service.store
        self.session = session
        event = session.event
        self.caller = event.asserted or event.caller
        self.caller_text = caller_key(self.caller) if self.caller is not None else "anonymous"
        self.person: str | None = None
        self.language = service.config.language
        self.alerts: dict[int, Alert] = {}
        self._rendered: dict[str, asyncio.Task[NDArray[np.int16]]] = {}
        self.loop = asyncio.get_running_loop()
        self.menu: CallinMenu | None = None
        self.playing: asyncio.Future[PlayEnd] | None = None
        self.play_token = 0
        self.timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        config = self.service.config
        rota = await self.store.load_rota()
        self.person = person_for(rota, self.caller)
        known = rota.person(self.person) if self.person is not None else None
        if known is not None:
            self.language = known.language
        if await self._locked():
            log.warning("call-in from %s refused: too many wrong PINs this hour", self.caller_text)
            self.service.observe("refused_locked")
            self.session.reject(603)
            return
        pin_required = config.pin_required or self.person is None
        if self.person is None and not await self.store.callin_any_pin():
            self.service.observe("refused_unknown")
            await self._refuse_unknown()
            return
        if not await self.session.answer():
            return
        self.service.observe("call")
        log.info("call-in from %s (%s)", self.caller_text, self.person or "unknown caller")
        self.menu = CallinMenu(config.menu, pin_required=pin_required)
        await self._apply(self.menu.answered(self.loop.time()))
        await self._loop()

    async def _locked(self) -> bool:
        since = self.service.clock.now_utc() - timedelta(hours=1)
        limit = self.service.config.max_failures_per_hour
        subjects = [f"caller:{self.caller_text}"]
        if self.person is not None:
            subjects.append(f"person:{self.person}")
        for subject in subjects:
            if await self.store.callin_failures_since(subject, since) >= limit:
                return True
        return False

    async def _refuse_unknown(self) -> None:
        log.info("call-in from %s: not a known contact, and no PINs set", self.caller_text)
        if not await self.session.answer():
            return
        future = self.session.play(await self._pcm((UNKNOWN, GOODBYE)))
        if future is not None:
            future.add_done_callback(lambda f: self.session.post(_PlayDone(f)))
            # Until the phrase ends or the caller hangs up, bounded like every last phrase.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.service.config.menu.max_closing_seconds):
                    while self.session.ended is None:
                        if isinstance(await self.session.next_input(), _PlayDone):
                            break
        self.session.hang_up()

    async def _loop(self) -> None:
        menu = self.menu
        assert menu is not None
        while self.session.ended is None and menu.phase.value != "done":
            item = await self.session.next_input()
            now = self.loop.time()
            if isinstance(item, CallEnded):
                menu.hung_up(now)
                break
            if isinstance(item, Digit):
                await self._apply(menu.digit(item.char, now))
            elif isinstance(item, _PlayDone):
                if item.future is self.playing:
                    self.playing = None
                    await self._apply(menu.playback_finished(now))
            elif isinstance(item, _Tick):
                deadline = menu.next_deadline()
                if deadline is not None and now >= deadline:
                    await self._apply(menu.handle_timer(now))
            self._arm_timer()
        if self.timer is not None:
            self.timer.cancel()

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        assert self.menu is not None
        deadline = self.menu.next_deadline()
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self.session.post, _Tick())

    async def _apply(self, actions: Sequence[Action]) -> None:
        menu = self.menu
        assert menu is not None
        for action in actions:
            now = self.loop.time()
            if isinstance(action, Play):
                await self._play(action.prompts)
            elif isinstance(action, HangUp):
                self.session.hang_up()
            elif isinstance(action, Identify):
                await self._apply(await self._identify(action.pin))
            elif isinstance(action, Acknowledge):
                transition = await self.store.ack_alert(action.alert_id, self._who(), "call-in")
                if transition.changed:
                    self.service.observe("acknowledged")
                    log.info("alert %s acknowledged by %s by call-in", action.alert_id, self._who())
                    self.service.wake()
                await self._apply(menu.done(transition.changed, self.loop.time()))
            elif isinstance(action, Resolve):
                transition = await self.store.resolve_alert(action.alert_id, by=self._who())
                if transition.changed:
                    self.service.observe("resolved")
                    log.info("alert %s resolved by %s by call-in", action.alert_id, self._who())
                    self.service.wake()
                await self._apply(menu.done(transition.changed, now))

    def _who(self) -> str:
        return self.person or "unknown"

    async def _identify(self, pin: str | None) -> list[Action]:
        menu = self.menu
        assert menu is not None
        person = self.person
        if pin is not None:
            person = await self.store.callin_check_pin(pin, self.person)
            if person is None:
                await self._pin_failed(menu)
                return menu.identified(None, (), False, self.loop.time())
        assert person is not None
        self.person = person
        self.service.observe("identified")
        settings = await self.store.callin_person(person)
        alerts = await self.store.callin_open_alerts(person)
        self.alerts = {a.id: a for a in alerts}
        # The first messages start rendering now, while the welcome plays (fixed phrases
        # are in the speech cache since start-up; an alert's text is new).
        for alert in alerts[:PREFETCH_ALERTS]:
            _ = self._render(alert_prompt(alert.id))
        may_resolve = settings is not None and settings.may_resolve
        return menu.identified(person, tuple(self.alerts), may_resolve, self.loop.time())

    async def _pin_failed(self, menu: CallinMenu) -> None:
        subjects = [f"caller:{self.caller_text}"]
        if self.person is not None:
            subjects.append(f"person:{self.person}")
        locked = menu.result.pin_failures + 1 >= menu.config.max_pin_attempts
        await self.store.callin_pin_failed(
            subjects, caller=self.caller_text, person=self.person, locked=locked
        )
        self.service.observe("locked_out" if locked else "wrong_pin")
        log.warning("call-in from %s: wrong PIN%s", self.caller_text,
                    "; locked out" if locked else "")  # fmt: skip

    async def _play(self, prompts: tuple[str, ...]) -> None:
        self.play_token += 1
        pcm = await self._pcm(prompts)
        future = self.session.play(pcm)
        self.playing = future
        if future is None:
            await self._apply(self.menu.playback_finished(self.loop.time()) if self.menu else [])
            return
        future.add_done_callback(lambda f: self.session.post(_PlayDone(f)))

    async def _pcm(self, keys: Sequence[str]) -> NDArray[np.int16]:
        gap = np.zeros(int(PROMPT_GAP_SECONDS * 8000), dtype=np.int16)
        parts: list[NDArray[np.int16]] = []
        for key in keys:
            try:
                parts += [await self._prompt(key), gap]
            except Exception:
                log.exception("call-in prompt %r could not be made", key)
        return np.concatenate(parts) if parts else gap

    def _render(self, key: str) -> asyncio.Task[NDArray[np.int16]]:
        task = self._rendered.get(key)
        if task is None:
            task = self._rendered[key] = asyncio.ensure_future(self._make(key))
            # A prefetch nobody awaits (the caller hung up) must not log "never retrieved";
            # a failure that matters is logged where the prompt is awaited (_pcm).
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _prompt(self, key: str) -> NDArray[np.int16]:
        if key.startswith(ALERT_PREFIX):
            # The next alert's message renders while this one is heard.
            following = [a for a in self.alerts if a > int(key.removeprefix(ALERT_PREFIX))]
            if following:
                _ = self._render(alert_prompt(following[0]))
        return await asyncio.shield(self._render(key))

    def close_renders(self) -> None:
        for task in self._rendered.values():
            task.cancel()

    async def _make(self, key: str) -> NDArray[np.int16]:
        speech = self.service.speech
        if key.startswith(ALERT_PREFIX):
            alert = self.alerts[int(key.removeprefix(ALERT_PREFIX))]
            fields = {k: str(v) for k, v in alert.fields.items()} | {
                "alert_id": str(alert.id), "summary": alert.summary,
                "severity": alert.severity.value, "source": alert.source,
            }  # fmt: skip
            return (await speech.phrase(MESSAGE, language=self.language, **fields)).pcm
        return (await speech.phrase(key, language=self.language)).pcm


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _PlayDone:
    future: asyncio.Future[PlayEnd]
