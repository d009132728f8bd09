"""`indie serve` as a user runs it: a process answering OSC, stopped by SIGTERM."""

import signal
import subprocess
import sys

from pythonosc.udp_client import SimpleUDPClient

from tests.bridge.conftest import ROOT, free_udp_port
from tests.bridge.test_osc_udp import OscListener
from tests.tiny_engine import export_tiny_weights


def test_serve_answers_and_stops_cleanly(tmp_path):
    codec, lm = export_tiny_weights(tmp_path / "weights")
    listener = OscListener()
    port = free_udp_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port), "--reply-port",
         str(listener.port), "--no-audio", "--out-dir", str(tmp_path / "out"), "--codec",
         str(codec), "--lm", str(lm), "--midi-in", "no such keyboard"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    try:
        assert "OSC on udp://127.0.0.1:" in process.stdout.readline()
        client = SimpleUDPClient("127.0.0.1", port)
        client.send_message("/indie/generate", ["a choir", 0.2, 1, "s1"])
        done = listener.replies.wait("/indie/done", timeout=30)
        assert done[0] == "s1" and done[1].startswith(str(tmp_path / "out"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 130
        stderr = process.stderr.read()
        assert "running without MIDI" in stderr and "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()


def test_serve_without_a_sound_card_says_what_to_do(tmp_path):
    codec, lm = export_tiny_weights(tmp_path / "weights")
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "serve", "--port", "0", "--audio-device",
         "no such card", "--codec", str(codec), "--lm", str(lm), "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "--no-audio" in result.stderr and "Traceback" not in result.stderr
