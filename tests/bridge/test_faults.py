"""Faults a live set meets: a killed process, SIGTERM mid-job, a full disk, the sound card gone.

Each test injects the real fault (a SIGKILL, a SIGTERM, a 64 KB tmpfs, a JACK server killed) and
checks that nothing is damaged and the bridge keeps serving.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pythonosc.udp_client import SimpleUDPClient

from bridge.audio_out import AudioLost
from bridge.jobs import Job, JobQueue
from bridge.session import Folders, Session
from bridge.worker import Worker
from engine.atomic import remove_stale_temporaries
from tests.bridge.conftest import ROOT, Replies, free_udp_port
from tests.bridge.fake_engine import FakeEngine
from tests.bridge.test_osc_udp import OscListener
from tests.tiny_engine import export_tiny_weights

# Writes the same final file over and over, alternating two lengths whose samples say which.
WRITER = textwrap.dedent("""
    import sys, numpy as np
    from engine.audio import write_audio
    path = sys.argv[1]
    print("ready", flush=True)
    for i in range(10**6):
        seconds = (1, 3)[i % 2]
        write_audio(path, np.full(32000 * seconds, seconds / 10, np.float32), 32000)
""")


def test_sigkill_while_writing_never_leaves_a_partial_file(tmp_path):
    final = tmp_path / "take.wav"
    rng = random.Random(0)
    kills = 0
    for _ in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(final)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))  # somewhere inside a write, most of the time
        writer.kill()
        writer.wait()
        kills += 1
        if final.exists():  # complete: one of the two takes, never a mix or a stub
            audio, rate = sf.read(final, dtype="float32")
            seconds = len(audio) // rate
            assert rate == 32000 and seconds in (1, 3) and len(audio) == seconds * rate
            assert np.allclose(audio, seconds / 10, atol=1e-4)
    assert kills == 6 and final.exists()
    # What the kills left are temporaries only, and a restart sweeps them.
    leftovers = [p for p in tmp_path.iterdir() if p != final]
    assert all(p.name.startswith(".take.wav.tmp-") for p in leftovers)
    assert sorted(remove_stale_temporaries(tmp_path, older_than=0)) == sorted(leftovers)
    assert list(tmp_path.iterdir()) == [final]


def test_session_start_sweeps_old_temporaries_only(tmp_path, replies):
    out = tmp_path / "out"
    out.mkdir()
    old = out / ".20260101-j1-x.wav.tmp-0123abcd.wav"
    young = out / ".20260101-j2-x.wav.tmp-89abcdef.wav"
    lookalike = out / ".notes.tmp-plans.txt"  # not one of ours: kept
    for path in (old, young, lookalike):
        path.write_bytes(b"RIFF")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(lookalike, (time.time() - 3600, time.time() - 3600))
    Session(FakeEngine(), Folders(out, out, tmp_path), replies)
    assert not old.exists() and young.exists() and lookalike.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KB tmpfs: a disk that fills up for real (needs root, as on the CI machine)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_is_an_error_and_the_bridge_goes_on(tiny_disk, tmp_path):
    replies = Replies()
    session = Session(FakeEngine(step_seconds=0.0), Folders(tiny_disk, tiny_disk, tmp_path),
                      replies)
    session.start()
    try:
        # 2 s of 16-bit audio at 32 kHz is 128 KB: twice the disk.
        session.handle(_generate("too big", 2.0, "big"))
        error = replies.wait("/indie/error", lambda args: args[0] == "big", timeout=10)
        assert error[1] == "disk_full" and "No space left" in error[2]
        assert list(tiny_disk.iterdir()) == []  # no partial clip, no temporary file
        session.handle(_generate("fits", 0.2, "small"))
        done = replies.wait("/indie/done", lambda args: args[0] == "small", timeout=10)
        assert sf.info(done[1]).frames == 6400
        assert Path(done[1]).with_suffix(".json").is_file()
    finally:
        session.close()


class LostCard:
    """A sound card that goes away after taking `blocks` blocks."""

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks

    def begin(self) -> None:
        pass

    def write(self, block, stop=None) -> bool:
        self.blocks -= 1
        if self.blocks < 0:
            raise AudioLost("the sound card 'test' stopped taking audio")
        return True

    def end(self) -> None:
        raise AudioLost("the sound card 'test' stopped taking audio")

    stop_now = end


@pytest.mark.parametrize("with_file", [True, False])
def test_a_card_lost_mid_clip_fails_only_a_clip_that_was_for_the_speakers(tmp_path, with_file):
    replies, jobs = Replies(), JobQueue(2)
    worker = Worker(FakeEngine(step_seconds=0.0), jobs, replies, LostCard(blocks=5))
    worker.start()
    try:
        jobs.put(Job("k1", "generate", {"prompt": "a choir", "seconds": 0.5, "seed": 1},
                     ("127.0.0.1", 9), output="both" if with_file else "stream",
                     out_path=tmp_path / "k1.wav" if with_file else None))
        if with_file:  # the clip goes on into its file
            assert replies.wait("/indie/done")[0] == "k1"
            assert sf.info(tmp_path / "k1.wav").duration == pytest.approx(0.5)
            errors = [("", "audio_lost")]  # said once, without a job id
        else:
            replies.wait("/indie/error", lambda args: args[0] == "k1")
            errors = [("", "audio_lost"), ("k1", "audio_lost")]
        assert [args[:2] for args in replies.of("/indie/error")] == errors
    finally:
        worker.stop()


def _generate(prompt: str, seconds: float, job_id: str):
    from bridge.osc.commands import Generate

    return Generate(prompt, seconds, 1, job_id)


class ServeProcess:
    """`indie serve` in its own process with the tiny models, as a performer would run it."""

    def __init__(self, tmp_path: Path, *extra: str, env: dict | None = None) -> None:
        codec, lm = export_tiny_weights(tmp_path / "weights")
        self.out = tmp_path / "out"
        self.listener = OscListener()
        port = free_udp_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port), "--reply-port",
             str(self.listener.port), "--out-dir", str(self.out), "--codec", str(codec),
             "--lm", str(lm), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                 **(env or {})})
        line = self.process.stdout.readline()
        assert "OSC on udp://127.0.0.1:" in line, self.process.stderr.read()
        self.client = SimpleUDPClient("127.0.0.1", port)
        self.replies = self.listener.replies

    def send(self, address: str, *args) -> None:
        self.client.send_message(address, list(args))

    def stop(self, timeout: float = 10.0) -> tuple[int, str]:
        """SIGTERM; returns (exit code, stderr)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        return code, self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.listener.close()


@pytest.fixture
def jack_env():
    """A private JACK server (dummy backend) for a child process; yields (server, env)."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    from bridge.jack_probe import JackServer

    with JackServer(48000, 256, portaudio=False) as server:
        yield server, {"JACK_DEFAULT_SERVER": server.name}


def _playing_a_clip(tmp_path: Path, env: dict, job_id: str) -> ServeProcess:
    """`indie serve` on the JACK server, in the middle of playing a 4 s clip (played on the
    card, it takes 4 s of wall time)."""
    serve = ServeProcess(tmp_path, "--audio-device", "system", env=env)
    try:
        serve.send("/indie/generate", "a choir", 4.0, 1, job_id)
        serve.replies.wait("/indie/progress", lambda args: args[0] == job_id, timeout=30)
    except BaseException:
        serve.close()
        raise
    return serve


def test_sigterm_mid_job_cancels_it_and_exits_cleanly(tmp_path, jack_env):
    serve = _playing_a_clip(tmp_path, jack_env[1], "t1")
    try:
        time.sleep(0.5)
        started = time.monotonic()
        code, stderr = serve.stop()
        assert code == 130 and time.monotonic() - started < 10
        assert serve.replies.wait("/indie/cancelled", timeout=1)[0] == "t1"
        assert "Traceback" not in stderr
        assert list(serve.out.iterdir()) == []  # no clip, no temporary file
    finally:
        serve.close()


def test_sound_card_lost_is_reported_and_files_go_on(tmp_path, jack_env):
    server, env = jack_env
    serve = _playing_a_clip(tmp_path, env, "a1")
    try:
        server.process.kill()  # the JACK server dies mid-clip
        server.process.wait()
        lost = serve.replies.wait("/indie/error", lambda args: args[1] == "audio_lost",
                                  timeout=10)
        assert lost[0] == ""
        done = serve.replies.wait("/indie/done", lambda args: args[0] == "a1", timeout=30)
        assert sf.info(done[1]).duration == pytest.approx(4.0, abs=0.02)
        # Later jobs still make files; live mode says why it cannot start; status tells.
        serve.send("/indie/set", "output", "stream")
        serve.send("/indie/generate", "a choir", 1.0, 2, "a2")
        done = serve.replies.wait("/indie/done", lambda args: args[0] == "a2", timeout=30)
        assert sf.info(done[1]).duration == pytest.approx(1.0, abs=0.02)
        serve.send("/indie/live", 1)
        serve.replies.wait("/indie/error", lambda args: args[1] == "audio_lost" and
                           "live" in args[2], timeout=10)
        serve.send("/indie/status")
        state = serve.replies.wait("/indie/state", timeout=10)
        assert state[state.index("audio_lost") + 1] == 1
        code, stderr = serve.stop()  # a lost PortAudio stream must not hang the exit
        assert code == 130 and "Traceback" not in stderr
    finally:
        serve.close()
