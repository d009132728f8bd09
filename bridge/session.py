"""The session: what each command does (state, jobs, replies), apart from any transport.

OSC and MIDI both end here as command dataclasses. The session holds the settings, host tempo
and melody, resolves every job completely when it is queued (length, tempo, seed, melody, output
file), and answers on the spot; the Worker runs the jobs.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.jobs import Address, Job, JobQueue
from bridge.live import CONTEXT_SECONDS, LiveLoop
from bridge.melody_recorder import MelodyRecorder
from bridge.osc import commands as c
from bridge.paths import PathRefused, inside, output_name
from bridge.presets import Preset, load_preset
from bridge.settings import SETTING_NAMES, SettingError, Settings
from bridge.worker import Reply, Worker
from engine import __version__
from engine.atomic import remove_stale_temporaries
from engine.config import ConfigError
from engine.melody import Note

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Folders:
    """Where files may go and come from: OSC never names a path outside these."""

    out: Path
    inputs: Path
    presets: Path


class Session:
    """Acts on commands.

    Args:
        engine: the Engine (only generate/stream/cancel/sample_rate/frame_rate/max_seconds used).
        folders: output, input (for /indie/continue) and presets folders.
        reply: sends (target, address, *args) over OSC.
        reply_port: default port for replies (to the sender's host).
        audio: AudioOut, or None to write files only.
        queue_size: jobs that may wait behind the running one.
        allow_remote_replies: let /indie/reply name a non-loopback host.
    """

    def __init__(self, engine, folders: Folders, reply: Reply, reply_port: int = 9001,
                 audio=None, queue_size: int = 8, allow_remote_replies: bool = False) -> None:
        self.engine = engine
        self.folders = folders
        self._send = reply
        self.reply_port = reply_port
        self.audio = audio
        self.allow_remote_replies = allow_remote_replies
        self.settings = Settings()
        self.host_bpm = 0.0
        self.preset: Preset | None = None
        self.melody = MelodyRecorder()
        self.jobs = JobQueue(queue_size)
        self.live = LiveLoop(self._live_request, lambda: self.melody.version,
                             lambda: self.melody.last_note_time)
        self.worker = Worker(engine, self.jobs, reply, audio, self.live.run)
        self.reply_override: Address | None = None
        self.last_sender: Address = ("127.0.0.1", reply_port)
        self.on_preset: list = []  # callbacks(preset): the MIDI router takes its CC map
        self._live_job: Job | None = None
        self._live_seed = self._live_chunk = 0
        self._counter = 0
        self._lock = threading.Lock()
        folders.out.mkdir(parents=True, exist_ok=True)
        for path in remove_stale_temporaries(folders.out):
            logger.warning("removed %s, left by a process killed while writing", path.name)

    def start(self) -> None:
        self.worker.start()

    def close(self) -> None:
        self.worker.stop()

    # -- dispatch --------------------------------------------------------------------------

    def target(self, sender: Address | None) -> Address:
        """Where replies go: /indie/reply's target, else the sender's host at the reply port."""
        if self.reply_override is not None:
            return self.reply_override
        if sender is not None:
            self.last_sender = (sender[0], self.reply_port)
        return self.last_sender

    def handle(self, command: c.Command, sender: Address | None = None) -> None:
        """Act on one command; every failure becomes /indie/error, never an exception."""
        to = self.target(sender)
        try:
            handler = getattr(self, "_on_" + type(command).__name__.lower())
            handler(command, to)
        except c.CommandError as error:
            self.error(to, error.job_id, error.code, error.message)
        except ConfigError as error:
            self.error(to, getattr(command, "job_id", ""), "bad_preset", str(error))
        except SettingError as error:
            self.error(to, "", "bad_value", str(error))
        except PathRefused as error:
            self.error(to, getattr(command, "job_id", ""), "path_refused", str(error))

    def error(self, to: Address, job_id: str, code: str, message: str) -> None:
        logger.info("error %s %s: %s", job_id, code, message)
        self._send(to, "/indie/error", job_id, code, message)

    # -- handlers --------------------------------------------------------------------------

    def _on_ping(self, command: c.Ping, to: Address) -> None:
        self._send(to, "/indie/pong", __version__, int(self.worker.busy))

    def _on_generate(self, command: c.Generate, to: Address) -> None:
        if not command.prompt.strip():
            raise c.CommandError("bad_arguments", "/indie/generate: the prompt is empty",
                                 command.job_id)
        settings = self.settings.with_value("prompt", command.prompt)
        self._submit("generate", settings, command.seconds, command.seed, command.job_id, to)

    def _on_continue(self, command: c.Continue, to: Address) -> None:
        path = inside(self.folders.inputs, command.file)
        if not path.is_file():
            raise c.CommandError("not_found", f"no such file in the input folder: {command.file}",
                                 command.job_id)
        prompt = self.settings.prompt or "continue this clip"
        self._submit("continue", self.settings.with_value("prompt", prompt), command.seconds,
                     command.seed, command.job_id, to, continue_from=path)

    def _on_render(self, command: c.Render, to: Address) -> None:
        preset = load_preset(self.folders.presets, command.preset)
        settings = preset.apply(self.settings).with_value("output", "file")
        self._submit("render", settings, 0.0, preset.seed, command.job_id, to,
                     melody=preset.melody_notes())

    def _on_set(self, command: c.Set, to: Address) -> None:
        self.settings = self.settings.with_value(command.name, command.value)
        self._send(to, "/indie/ack", "/indie/set", command.name, _osc_value(command.value))

    def _on_tempo(self, command: c.Tempo, to: Address) -> None:
        self.host_bpm = command.bpm
        self._send(to, "/indie/ack", "/indie/tempo", float(command.bpm))

    def _on_melodynote(self, command: c.MelodyNote, to: Address) -> None:
        self.melody.note(command.pitch, command.velocity)

    def _on_melodyclear(self, command: c.MelodyClear, to: Address) -> None:
        self.melody.clear()
        self._send(to, "/indie/ack", "/indie/melody/clear")

    def _on_loadpreset(self, command: c.LoadPreset, to: Address) -> None:
        preset = load_preset(self.folders.presets, command.name)
        self.settings = preset.apply(self.settings)
        self.preset = preset
        for callback in self.on_preset:
            callback(preset)
        self._send(to, "/indie/ack", "/indie/preset", preset.name)

    def _on_live(self, command: c.Live, to: Address) -> None:
        if command.on:
            if self.audio is None:
                raise c.CommandError("no_audio", "live mode needs the sound card (serve without "
                                     "--no-audio)")
            if self.audio.lost:
                raise c.CommandError("audio_lost", "the sound card went away; restart indie "
                                     "serve to play live again")
            if self._live_job is not None and not self._live_job.cancel.is_set():
                self._send(to, "/indie/ack", "/indie/live", 1)
                return
            self._live_seed = (self.settings.seed if self.settings.seed >= 0
                               else secrets.randbelow(2**31))
            self._live_chunk = 0
            job = Job(self._new_id(""), "live", {}, to, output="stream")
            self._put(job)
            self._live_job = job
        elif self._live_job is not None:
            self.worker.cancel(self._live_job.job_id)
            self._live_job = None
        self._send(to, "/indie/ack", "/indie/live", int(command.on))

    def _on_transport(self, command: c.Transport, to: Address) -> None:
        if self.audio is not None:
            self._on_live(c.Live(command.start), to)
        elif not command.start:
            self._on_cancel(c.Cancel(""), to)

    def _on_cancel(self, command: c.Cancel, to: Address) -> None:
        hit = self.worker.cancel(command.job_id)
        if command.job_id == "":
            self._live_job = None
        if not hit:
            raise c.CommandError("no_such_job", f"no running or queued job {command.job_id!r}"
                                 if command.job_id else "nothing to cancel", command.job_id)
        self._send(to, "/indie/ack", "/indie/cancel", *hit)

    def _on_status(self, command: c.Status, to: Address) -> None:
        current = self.worker.current
        state: list[Any] = ["busy", int(self.worker.busy),
                            "job", current.job_id if current else "",
                            "queued", len(self.jobs),
                            "live", int(self._live_job is not None),
                            "host_bpm", float(self.host_bpm),
                            "preset", self.preset.name if self.preset else "",
                            "melody_notes", len(self.melody.phrase(self.engine.max_seconds))]
        for name in SETTING_NAMES:
            state += [name, _osc_value(getattr(self.settings, name))]
        if self.audio is not None:
            stats = self.audio.stats()
            state += ["underruns", stats.underruns, "audio_lost", int(self.audio.lost)]
        self._send(to, "/indie/state", *state)

    def _on_replyto(self, command: c.ReplyTo, to: Address) -> None:
        host = command.host
        try:
            resolved = socket.gethostbyname(host)
        except OSError:
            raise c.CommandError("bad_arguments", f"unknown host {host!r}") from None
        if not self.allow_remote_replies and not ipaddress.ip_address(resolved).is_loopback:
            raise c.CommandError("refused", f"replies go to loopback only (not {host}); serve "
                                 "with --host to allow other hosts")
        self.reply_override = (resolved, command.port)
        self._send(self.reply_override, "/indie/ack", "/indie/reply", resolved, command.port)

    # -- jobs ------------------------------------------------------------------------------

    def _submit(self, kind: str, settings: Settings, seconds: float, seed: int, job_id: str,
                to: Address, melody: list[Note] | None = None,
                continue_from: Path | None = None) -> None:
        job_id = self._new_id(job_id)
        try:
            request = self.request(settings, seconds, seed, melody)
        except c.CommandError as error:
            raise c.CommandError(error.code, error.message, job_id) from None
        if continue_from is not None:
            request["continue_from"] = continue_from
        length = request.get("seconds") or (request["bars"] * request["beats_per_bar"] * 60
                                            / request["bpm"])
        if length > self.engine.max_seconds:
            raise c.CommandError("out_of_range", f"{length:.1f} s is longer than the engine's "
                                 f"{self.engine.max_seconds:g} s", job_id)
        out_path = None
        # Without a sound card (none, or lost mid-set) every clip goes to a file.
        if settings.output in ("file", "both") or self.audio is None or self.audio.lost:
            out_path = inside(self.folders.out,
                              output_name(job_id, settings.prompt, settings.format))
        self._put(Job(job_id, kind, request, to, settings.output, settings.format, out_path))

    def _put(self, job: Job) -> None:
        try:
            self.jobs.put(job)
        except queue.Full:
            raise c.CommandError("queue_full", f"{len(self.jobs)} jobs are waiting; try later "
                                 "or cancel one", job.job_id) from None
        self._send(job.reply_to, "/indie/queued", job.job_id, len(self.jobs))

    def request(self, settings: Settings, seconds: float = 0.0, seed: int = -1,
                melody: list[Note] | None = None) -> dict[str, Any]:
        """Engine.stream keyword arguments from settings, with the length, tempo, seed and melody
        resolved now."""
        bpm = settings.bpm or self.host_bpm or None
        request: dict[str, Any] = {"prompt": settings.prompt, "bpm": bpm,
                                   "beats_per_bar": settings.beats_per_bar}
        if seconds > 0:
            request.update(seconds=seconds, bars=None)
        elif settings.bars > 0:
            if not bpm:
                raise c.CommandError("no_tempo", f"bars is {settings.bars:g} but there is no "
                                     "tempo: send /indie/tempo, MIDI clock, or set bpm")
            request.update(seconds=None, bars=settings.bars)
        else:
            request.update(seconds=settings.seconds, bars=None)
        if seed < 0:
            seed = settings.seed if settings.seed >= 0 else secrets.randbelow(2**31)
        notes = melody if melody is not None else self.melody.phrase(
            request["seconds"] or self.engine.max_seconds)
        request.update(seed=seed, melody=notes or None, pattern=settings.pattern or None,
                       temperature=settings.temperature, top_k=settings.top_k,
                       top_p=settings.top_p, cfg=settings.cfg)
        return request

    def _live_request(self) -> dict[str, Any]:
        """The next live chunk: current settings, whole bars when there is a tempo, and the
        current note held for the chunk."""
        settings = self.settings
        bpm = settings.bpm or self.host_bpm
        seconds = settings.live_chunk_seconds
        if bpm:
            bar = settings.beats_per_bar * 60.0 / bpm
            seconds = max(1, round(seconds / bar)) * bar
        # The context a chunk continues shares the model's length with the chunk.
        seconds = max(min(seconds, self.engine.max_seconds - CONTEXT_SECONDS), 0.25)
        pitch = self.melody.current_pitch()
        melody = [Note(pitch, 0.0, seconds)] if pitch is not None else []
        seed = (self._live_seed + self._live_chunk) % 2**31  # chunk n of a live take: seed + n
        self._live_chunk += 1
        return self.request(settings.with_value("prompt", settings.prompt or "music"),
                            seconds, seed, melody)

    def _new_id(self, job_id: str) -> str:
        with self._lock:
            self._counter += 1
            return job_id or f"j{self._counter}"


def _osc_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value
