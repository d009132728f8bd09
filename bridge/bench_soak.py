"""`indie bench soak`: many clients drive one bridge for minutes; nothing may crash, leak or stall.

A private JACK server (dummy backend) is the sound card. Several clients, each on its own UDP
socket, loop over seeded random actions against one bridge on loopback:

- generate a clip (0.5–3 s, to the card and a file) and wait for its end;
- generate, then cancel it after a random moment;
- live mode on for a few seconds (with a melody note or two), then off;
- status and ping.

Every request that must be answered is counted against its reply: each job must end in exactly
one of done / cancelled / error, every /indie/ping in a pong, every /indie/status in a state,
every live toggle in an ack. Every few seconds the bench samples the process's memory (RSS),
threads and open files, and the sound card's underruns. Each finished clip is read back.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge.process_status import proc_status

logger = logging.getLogger(__name__)

PROMPTS = ("a string quartet playing a slow chorale", "bright brass fanfare at 120 BPM",
           "solo piano, calm and sparse", "a woodwind trio in a minor key")
TERMINAL = ("/indie/done", "/indie/cancelled", "/indie/error")
ANSWER_SECONDS = 120.0  # a job may wait behind the others and a live take


@dataclass(frozen=True)
class SoakConfig:
    """How hard and how long to push the bridge.

    Args:
        seconds: how long the clients run.
        clients: concurrent clients, each with its own socket and seed.
        seed: the clients' actions are drawn from random.Random(seed + client).
        sample_every: seconds between process samples.
        warmup_seconds: samples before this are the baseline's warm-up (models, buffers).
        rss_growth_bound_mb: memory growth after warm-up that still passes.
        thread_growth_bound: threads above the warm-up count that still pass.
        mix: relative weights of the actions (generate, cancel, live, status).
    """

    seconds: float = 600.0
    clients: int = 3
    seed: int = 0
    sample_every: float = 5.0
    warmup_seconds: float = 60.0
    rss_growth_bound_mb: float = 64.0
    thread_growth_bound: int = 4
    mix: tuple[tuple[str, float], ...] = (("generate", 4), ("cancel", 3), ("live", 2),
                                          ("status", 2))


@dataclass
class Sample:
    """The bridge process at one moment."""

    t: float
    rss_mb: float
    threads: int
    open_files: int
    underruns: int
    queued: int


class ReplyBook:
    """Replies the bridge sent, by job id and by address (thread-safe, constant memory per job)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.by_address: Counter[str] = Counter()
        self.job_ends: dict[str, list[tuple[str, tuple]]] = {}
        self.errors: Counter[str] = Counter()

    def add(self, address: str, args: tuple) -> None:
        with self._cond:
            self.by_address[address] += 1
            if address == "/indie/error":
                self.errors[str(args[1]) if len(args) > 1 else "?"] += 1
            if address in TERMINAL and args and args[0]:
                self.job_ends.setdefault(str(args[0]), []).append((address, args))
            self._cond.notify_all()

    def wait_end(self, job_id: str, timeout: float) -> tuple[str, tuple] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while job_id not in self.job_ends:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self.job_ends[job_id][0]


@dataclass
class ClientLog:
    """What one client did and what came back."""

    actions: Counter = field(default_factory=Counter)
    sent: Counter = field(default_factory=Counter)  # requests that must be answered, by reply
    jobs: int = 0
    unanswered_jobs: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    files: list[tuple[str, float]] = field(default_factory=list)  # (path, seconds asked)


def _client(index: int, port: int, book: ReplyBook, config: SoakConfig, deadline: float,
            log: ClientLog) -> None:
    from pythonosc.udp_client import SimpleUDPClient

    rng = random.Random(config.seed + index)
    client = SimpleUDPClient("127.0.0.1", port)
    n = 0

    def job(cancel_after: float | None) -> None:
        nonlocal n
        n += 1
        job_id = f"c{index}-{n}"
        seconds = round(rng.uniform(0.5, 3.0), 2)
        client.send_message("/indie/generate", [rng.choice(PROMPTS), seconds,
                                                rng.randrange(2**31), job_id])
        log.jobs += 1
        if cancel_after is not None:
            time.sleep(cancel_after)
            client.send_message("/indie/cancel", [job_id])  # ack, or error if already over
        end = book.wait_end(job_id, ANSWER_SECONDS)
        if end is None:
            log.unanswered_jobs.append(job_id)
            return
        address, args = end
        outcome = address.rsplit("/", 1)[1] + (f":{args[1]}" if address == "/indie/error"
                                               else "")
        log.outcomes[outcome] += 1
        if address == "/indie/done" and args[1]:
            log.files.append((str(args[1]), seconds))

    while time.monotonic() < deadline:
        action = rng.choices([name for name, _ in config.mix],
                             [weight for _, weight in config.mix])[0]
        log.actions[action] += 1
        if action == "generate":
            job(None)
        elif action == "cancel":
            job(rng.uniform(0.05, 1.5))
        elif action == "live":
            client.send_message("/indie/live", [1])
            log.sent["/indie/ack"] += 1
            for _ in range(rng.randrange(3)):
                time.sleep(rng.uniform(0.5, 2.0))
                client.send_message("/indie/melody/note", [rng.randrange(55, 80), 100])
            time.sleep(rng.uniform(0.5, 2.0))
            client.send_message("/indie/live", [0])
            log.sent["/indie/ack"] += 1
        else:
            client.send_message("/indie/status", [])
            client.send_message("/indie/ping", [])
            log.sent["/indie/state"] += 1
            log.sent["/indie/pong"] += 1
            time.sleep(rng.uniform(0.1, 0.5))


def _sample(t: float, bridge) -> Sample:
    status = proc_status()
    return Sample(round(t, 1), round(status["rss_kib"] / 1024, 1), status["threads"],
                  len(os.listdir("/proc/self/fd")), bridge.audio.stats().total_underruns,
                  len(bridge.session.jobs))


def _check_files(files: list[tuple[str, float]]) -> dict[str, Any]:
    """Every clip reported done exists, reads back, has its sidecar and its asked length."""
    import soundfile as sf

    bad = []
    for path, seconds in files:
        try:
            info = sf.info(path)
            ok = (abs(info.duration - seconds) < 0.03
                  and Path(path).with_suffix(".json").is_file())
        except (OSError, RuntimeError) as error:
            ok, info = False, error
        if not ok:
            bad.append(f"{path}: {info}")
    return {"clips": len(files), "bad": bad[:10], "bad_count": len(bad)}


def bench_soak(engine, config: SoakConfig) -> dict[str, Any]:
    """Run the soak (see the module docstring) and return its figures and verdict."""
    from bridge.app import Bridge, BridgeOptions
    from bridge.jack_probe import JackServer
    from bridge.reply_listener import ReplyListener

    book = ReplyBook()
    with JackServer(48000, 256) as jack, tempfile.TemporaryDirectory() as out:
        listener = ReplyListener(on_reply=book.add, record=False)
        options = BridgeOptions(port=0, reply_port=listener.port, out_dir=Path(out),
                                audio=True, audio_device="system")
        bridge = Bridge(engine, options)
        try:
            started = time.monotonic()
            deadline = started + config.seconds
            logs = [ClientLog() for _ in range(config.clients)]
            threads = [threading.Thread(target=_client, name=f"soak-client-{i}",
                                        args=(i, bridge.port, book, config, deadline, logs[i]),
                                        daemon=True) for i in range(config.clients)]
            samples = [_sample(0.0, bridge)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                time.sleep(config.sample_every)
                samples.append(_sample(time.monotonic() - started, bridge))
                logger.info("soak %.0f s: %s", samples[-1].t, samples[-1])
            time.sleep(1.0)  # the last acks and pongs are on their way
            samples.append(_sample(time.monotonic() - started, bridge))
            files = _check_files([f for log in logs for f in log.files])
            result = _summarise(config, logs, book, samples, files, jack.name)
        finally:
            bridge.close()
            listener.close()
    return result


def _summarise(config: SoakConfig, logs: list[ClientLog], book: ReplyBook,
               samples: list[Sample], files: dict[str, Any], jack: str) -> dict[str, Any]:
    total = lambda attr: sum((getattr(log, attr) for log in logs), Counter())  # noqa: E731
    sent, outcomes = total("sent"), total("outcomes")
    replies = {address: {"sent": sent[address], "received": book.by_address[address]}
               for address in sent}
    unanswered = [job for log in logs for job in log.unanswered_jobs]
    warm = [s for s in samples if s.t >= config.warmup_seconds] or samples[-1:]
    rss_growth = samples[-1].rss_mb - warm[0].rss_mb
    thread_growth = max(s.threads for s in warm) - warm[0].threads
    underruns = samples[-1].underruns
    checks = {
        "every job answered": not unanswered,
        # UDP on loopback under load may drop a datagram; say so rather than hide it.
        "every ack/state/pong received": all(r["received"] >= r["sent"]
                                             for r in replies.values()),
        "no internal errors": book.errors["internal"] == 0 and book.errors["engine_failed"] == 0,
        f"RSS growth after warm-up <= {config.rss_growth_bound_mb:g} MB":
            rss_growth <= config.rss_growth_bound_mb,
        f"thread growth after warm-up <= {config.thread_growth_bound}":
            thread_growth <= config.thread_growth_bound,
        "0 underruns": underruns == 0,
        "every clip reads back complete": files["bad_count"] == 0,
    }
    return {
        "config": asdict(config),
        "jack_server": jack,
        "seconds": samples[-1].t,
        "actions": dict(total("actions")),
        "jobs": sum(log.jobs for log in logs),
        "job_outcomes": dict(outcomes),
        "unanswered_jobs": unanswered,
        "replies": replies,
        "error_codes": dict(book.errors),
        "files": files,
        "underruns": underruns,
        "rss_mb": {"start": samples[0].rss_mb, "after_warmup": warm[0].rss_mb,
                   "end": samples[-1].rss_mb, "max": max(s.rss_mb for s in samples),
                   "growth_after_warmup": round(rss_growth, 1)},
        "threads": {"start": samples[0].threads, "after_warmup": warm[0].threads,
                    "end": samples[-1].threads, "max": max(s.threads for s in samples)},
        "open_files": {"start": samples[0].open_files, "end": samples[-1].open_files,
                       "max": max(s.open_files for s in samples)},
        "checks": checks,
        "passed": all(checks.values()),
        "samples": [asdict(s) for s in samples],
    }
