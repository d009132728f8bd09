"""The one engine worker: takes jobs from the queue and runs them through `Engine.stream`.

Replies for each job: `/indie/started id`, `/indie/progress id 0..1` (at most every
PROGRESS_INTERVAL seconds, plus 1.0 at the end), then `/indie/done id path seconds`,
`/indie/cancelled id seconds` or `/indie/error id code message`. The same blocks feed the sound
card (through AudioOut's bounded buffer) and the file.

Failures that are not the job's fault are answered too: a sound card that goes away mid-job
(`/indie/error "" audio_lost ...`, once; the job carries on into its file if it has one) and a
file that cannot be written (`/indie/error id disk_full|write_failed ...`).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from bridge.audio_out import AudioLost
from bridge.jobs import Address, Job, JobQueue, write_clip

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1
Reply = Callable[..., None]  # reply(address_tuple, osc_address, *args)


class EngineLike(Protocol):
    """What the bridge uses of `engine.Engine` (and nothing else)."""

    sample_rate: int
    frame_rate: float
    max_seconds: float

    def stream(self, prompt: str, **kwargs: Any): ...
    def cancel(self) -> None: ...


class Worker:
    """Runs queued jobs one at a time on its own thread.

    Args:
        engine: the Engine (or a test double with its API).
        jobs: the bounded queue the session fills.
        reply: sends an OSC reply.
        audio: AudioOut or None (no sound card).
        live_runner: runs a "live" job (bridge.live.LiveLoop.run), or None.
    """

    def __init__(self, engine: EngineLike, jobs: JobQueue, reply: Reply, audio=None,
                 live_runner: Callable[[Job, Worker], None] | None = None) -> None:
        self.engine = engine
        self.jobs = jobs
        self.reply = reply
        self.audio = audio
        self.live_runner = live_runner
        self.current: Job | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="indie-engine", daemon=True)
        self.completed: list[tuple[str, str]] = []  # (job id, outcome), for status and tests
        self._told_audio_lost = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.cancel("")
        self.jobs.wake()
        self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        return self.current is not None or len(self.jobs) > 0

    def cancel(self, job_id: str) -> list[str]:
        """Cancel the job named `job_id` (queued or running), or everything for ''.

        Returns:
            The ids of the jobs told to stop.
        """
        hit = []
        for job in self.jobs.waiting():
            if job_id in ("", job.job_id):
                job.cancel.set()
                hit.append(job.job_id)
        with self._lock:
            job = self.current
            if job is not None and job_id in ("", job.job_id):
                job.cancel.set()
                self.engine.cancel()  # stops within one step, even inside a long prefill
                hit.append(job.job_id)
        return hit

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self.jobs.get(timeout=0.5)
            if job is None:
                continue
            if job.cancel.is_set():
                self.reply(job.reply_to, "/indie/cancelled", job.job_id, 0.0)
                self.completed.append((job.job_id, "cancelled"))
                continue
            with self._lock:
                self.current = job
            job.started_at = time.monotonic()
            try:
                if job.kind == "live" and self.live_runner is not None:
                    self.live_runner(job, self)
                else:
                    self.run_clip(job)
            except AudioLost as error:  # a live take, or a clip only for the speakers
                self.audio_lost(job, error)
                self._fail(job, "audio_lost", f"{error}; the {job.kind} job needed it")
            except Exception as error:  # the worker never dies: the job fails, loudly
                logger.exception("job %s failed", job.job_id)
                self._fail(job, "engine_failed", f"{type(error).__name__}: {error}")
            finally:
                with self._lock:
                    self.current = None

    def run_clip(self, job: Job) -> None:
        """Generate one clip: stream it to the sound card and/or collect it for the file."""
        play = self.audio is not None and job.output in ("stream", "both")
        if play:
            play = self._playing(job, self.audio.begin)
        self.reply(job.reply_to, "/indie/started", job.job_id)
        progress = ThrottledProgress(self.reply, job)
        blocks: list[np.ndarray] = []
        params: dict[str, Any] | None = None
        try:
            stream = self.engine.stream(**job.request, progress=progress)
            params = getattr(stream, "params", None)  # resolved by the engine
            try:
                for block in stream:
                    blocks.append(block)
                    if job.cancel.is_set():
                        break
                    if play:
                        play = self._playing(job, self.audio.write, block, job.cancel)
            finally:
                if hasattr(stream, "close"):
                    stream.close()  # the engine runs one generation at a time
                if play:
                    self._finish_playing(job)
        except ValueError as error:  # EngineError and AudioFileError: bad input
            self._fail(job, "bad_request", str(error))
            return
        seconds = sum(len(b) for b in blocks) / self.engine.sample_rate
        if job.cancel.is_set():
            self.reply(job.reply_to, "/indie/cancelled", job.job_id, float(seconds))
            self.completed.append((job.job_id, "cancelled"))
            return
        progress.finish()
        path = ""
        if job.out_path is not None and blocks:
            try:
                path = str(write_clip(job, np.concatenate(blocks), self.engine.sample_rate,
                                      params))
            except OSError as error:  # a full disk fails this job, not the bridge
                full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                self._fail(job, "disk_full" if full else "write_failed",
                           f"cannot write {job.out_path}: {error.strerror or error}")
                return
        self.reply(job.reply_to, "/indie/done", job.job_id, path, float(seconds))
        self.completed.append((job.job_id, "done"))

    def _playing(self, job: Job, action: Callable[..., object], *args: Any) -> bool:
        """Do a sound-card action; False (go on without the card) once the card is lost.

        Raises:
            AudioLost: the card is lost and the job makes no file (it was only for the
                speakers); the worker's loop answers it.
        """
        try:
            action(*args)
            return True
        except AudioLost as error:
            self.audio_lost(job, error)
            if job.out_path is None:
                raise
            return False

    def _finish_playing(self, job: Job) -> None:
        try:
            if job.cancel.is_set():
                self.audio.stop_now()
            else:
                self.audio.end()
        except AudioLost as error:
            self.audio_lost(job, error)

    def audio_lost(self, job: Job, error: AudioLost) -> None:
        """Say once that the sound card is gone; files go on being written."""
        if not self._told_audio_lost:
            self._told_audio_lost = True
            logger.error("%s; serving files only from now on (restart indie serve to play "
                         "again)", error)
            self.reply(job.reply_to, "/indie/error", "", "audio_lost",
                       f"{error}; files only from now on (restart indie serve to play again)")

    def _fail(self, job: Job, code: str, message: str) -> None:
        self.reply(job.reply_to, "/indie/error", job.job_id, code, message)
        self.completed.append((job.job_id, "error"))


class ThrottledProgress:
    """The engine's progress(done, total) callback, sent as /indie/progress at most every 0.1 s."""

    def __init__(self, reply: Reply, job: Job, target: Address | None = None) -> None:
        self.reply, self.job = reply, job
        self._last = 0.0
        self._sent_final = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL and done < total:
            self._last = now
            self.reply(self.job.reply_to, "/indie/progress", self.job.job_id,
                       float(done / max(total, 1)))

    def finish(self) -> None:
        if not self._sent_final:
            self._sent_final = True
            self.reply(self.job.reply_to, "/indie/progress", self.job.job_id, 1.0)
