"""Render text to telephone prompts with Piper, off the event loop (docs/architecture.md §8).

- Synthesis runs in ``workers`` worker processes owned by the renderer
  (``synth_worker``): Piper holds the GIL for stretches of its work, which in a thread
  would stall the event loop pacing every call. Each worker loads a voice once (about
  half a second) and keeps it; a worker that dies is replaced. The workers start by
  forkserver, which imports the program's main module: a script that renders must guard
  its entry point with ``if __name__ == "__main__"``.
- The cache is read before synthesizing, and concurrent requests for the same prompt (a
  mass alert) share one synthesis.
- The prompts used last stay in memory (``memory_bytes``, least recently used out first):
  every call says the same greeting and menu, and the calls of one alert the same message,
  so a call's answer then costs no thread, no file and no GIL. Sixteen calls answered at
  once used to read 64 files in threads at that moment, and the threads' Python work took
  the GIL from the event loop that paces every call's audio (docs/realtime.md §4).
- ``render`` takes the text exactly as Piper should read it: pronunciation rules are
  applied before (``speech.Speech`` does both).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import multiprocessing
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Final, TypeVar

import numpy as np
import soxr

from voipalert.tts import synth_worker
from voipalert.tts.audio import Int16Array
from voipalert.tts.cache import PromptCache
from voipalert.tts.config import RenderConfig
from voipalert.tts.errors import RenderError
from voipalert.tts.memo import BoundedMemo
from voipalert.tts.prompt import Prompt, prompt_key
from voipalert.tts.voices import Voice, VoiceId, VoiceInventory

_log = logging.getLogger(__name__)
_R = TypeVar("_R")

# A bound on the work one request can cause (a 10-second alert is ~150 characters).
MAX_TEXT_CHARS: Final = 4000
# 32 MiB of 8 kHz 16-bit audio is about 35 minutes: every phrase and the messages of
# the alerts being called, with room to spare.
MEMORY_BYTES: Final = 32 * 1024 * 1024
KEY_MEMO_ENTRIES: Final = 4096  # prompt keys remembered (a 64-char hex string each)


def engine_versions() -> dict[str, str]:
    """Library versions that change the synthesized or resampled audio."""
    return {
        "piper-tts": importlib.metadata.version("piper-tts"),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "soxr": str(soxr.__version__),
    }


class Renderer:
    """``await renderer.render(text, voice_id) -> Prompt``; ``close()`` when done."""

    def __init__(
        self,
        inventory: VoiceInventory,
        config: RenderConfig | None = None,
        *,
        cache: PromptCache | None = None,
        workers: int = 1,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._inventory = inventory
        self._config = config if config is not None else RenderConfig()
        self._cache = cache
        self._workers = workers
        self._pool = self._new_pool()
        self._voices: dict[VoiceId, None] = {}  # voices the workers have loaded, in order
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Task[tuple[Int16Array, bool]]] = {}
        self._memory: OrderedDict[str, Int16Array] = OrderedDict()
        self._memory_bytes = memory_bytes
        self._memory_used = 0
        self._versions = engine_versions()
        self._keys: BoundedMemo[tuple[str, str, str, str], str] = BoundedMemo(KEY_MEMO_ENTRIES)
        self._synth_count = 0

    @property
    def synth_count(self) -> int:
        """How many times Piper has synthesized a prompt (cache hits do not count)."""
        with self._lock:
            return self._synth_count

    @property
    def loaded_voices(self) -> tuple[VoiceId, ...]:
        with self._lock:
            return tuple(self._voices)

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: serve has threads by now (the loop watch, the log writer, the
        # database), and forking a threaded process can copy a lock held by another thread.
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(
            max_workers=self._workers, mp_context=context,
            initializer=synth_worker.behind_the_calls,
        )  # fmt: skip

    def _job(self, voice: Voice, text: str = synth_worker.WARM_UP_TEXT) -> synth_worker.Job:
        return synth_worker.Job(
            voice.id, str(voice.model_path), str(voice.config_path), self._config, text
        )

    async def _in_worker(
        self, function: Callable[[synth_worker.Job], _R], job: synth_worker.Job
    ) -> _R:
        """Run ``function(job)`` in a worker; a dead worker is replaced and the job fails.

        Submitted from a thread, not the loop: a submit may start a worker process (the
        pool grows on demand, and a broken pool is replaced), which waits on the
        forkserver, and the first one starts the forkserver itself: 190 ms with the loop
        blocked was measured under load, every call's audio held meanwhile."""
        pool = self._pool
        try:
            future = await asyncio.to_thread(pool.submit, function, job)
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            if self._pool is pool:
                _log.error("a speech worker process died (%s); starting new ones", exc)
                self._pool = self._new_pool()
                pool.shutdown(wait=False)
            raise RenderError(f"voice {job.voice_id}: the synthesis process died") from exc
        with self._lock:
            if job.voice_id not in self._voices:
                self._voices[job.voice_id] = None
                _log.info("loaded voice %s", job.voice_id)
        return result

    @property
    def inventory(self) -> VoiceInventory:
        return self._inventory

    def key_for(self, text: str, voice_id: str | None = None) -> str:
        voice = self._inventory.get(voice_id or self._inventory.default_id)
        return self._key(text.strip(), voice)

    def _key(self, text: str, voice: Voice) -> str:
        # Pure in (text, voice files); the render settings and versions are fixed for the
        # renderer's life. Memoised: see voipalert/tts/memo.py.
        return self._keys.get(
            (text, voice.id, voice.model_sha256, voice.config_sha256),
            lambda: prompt_key(text, voice, self._config, self._versions),
        )

    async def _produce(self, key: str, text: str, voice: Voice) -> tuple[Int16Array, bool]:
        if self._cache is not None:
            cached = await asyncio.to_thread(self._cache.get, key)
            if cached is not None:
                return cached, True
        pcm = await self._in_worker(synth_worker.synthesize, self._job(voice, text))
        with self._lock:
            self._synth_count += 1
        if self._cache is not None:
            await asyncio.to_thread(self._cache.put, key, pcm)
        return pcm, False

    def _finished(self, task: asyncio.Task[tuple[Int16Array, bool]]) -> None:
        for key, pending in list(self._inflight.items()):
            if pending is task:
                del self._inflight[key]
                if not task.cancelled() and task.exception() is None:
                    self._remember(key, task.result()[0])
        if not task.cancelled():
            # Every waiter may have been cancelled; retrieving the error here keeps asyncio
            # from logging "exception was never retrieved" (the waiters still see it).
            task.exception()

    def _remember(self, key: str, pcm: Int16Array) -> None:
        if pcm.nbytes > self._memory_bytes or key in self._memory:
            return
        pcm = np.array(pcm, dtype=np.int16)
        pcm.setflags(write=False)  # shared by every call that says it
        self._memory[key] = pcm
        self._memory_used += pcm.nbytes
        while self._memory_used > self._memory_bytes:
            _, old = self._memory.popitem(last=False)
            self._memory_used -= old.nbytes

    @property
    def memory_used(self) -> int:
        """Bytes of prompts kept in memory."""
        return self._memory_used

    async def render(self, text: str, voice_id: str | None = None) -> Prompt:
        """The prompt for ``text`` in ``voice_id`` (default voice when None)."""
        text = text.strip()
        if not text:
            raise RenderError("nothing to say: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise RenderError(f"text of {len(text)} characters exceeds {MAX_TEXT_CHARS}")
        voice = self._inventory.get(voice_id or self._inventory.default_id)
        key = self._key(text, voice)
        kept = self._memory.get(key)
        if kept is not None:
            self._memory.move_to_end(key)
            return Prompt(kept, text, voice.id, key, True)  # read-only, shared
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._produce(key, text, voice))
            self._inflight[key] = task
            task.add_done_callback(self._finished)
        # shield: one caller giving up (its call was cancelled) must not cancel the
        # synthesis other callers of the same prompt are waiting for.
        pcm, from_cache = await asyncio.shield(task)
        return Prompt(np.array(pcm, dtype=np.int16), text, voice.id, key, from_cache)

    async def preload(self, *voice_ids: str) -> None:
        """Load and warm voices now (at start-up) rather than at the first alert."""
        for voice_id in voice_ids or (self._inventory.default_id,):
            voice = self._inventory.get(voice_id)
            # One warm-up per worker: each process loads its own copy of the voice.
            await asyncio.gather(
                *(
                    self._in_worker(synth_worker.warm_up, self._job(voice))
                    for _ in range(self._workers)
                )
            )

    async def aclose(self) -> None:
        """Cancel renders in progress, then wait for the worker processes to finish."""
        pending = list(self._inflight.values())
        for task in pending:
            task.cancel()
        try:
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
