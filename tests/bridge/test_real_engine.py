"""End to end with the real Engine (tiny random models) through the OSC server over UDP."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pythonosc.udp_client import SimpleUDPClient

from bridge.app import Bridge, BridgeOptions
from tests.bridge.test_osc_udp import listener  # noqa: F401  (fixture)
from tests.tiny_engine import tiny_engine


def test_generate_bars_melody_and_continue_with_the_real_engine(folders, listener):  # noqa: F811
    engine = tiny_engine()
    options = BridgeOptions(port=0, reply_port=listener.port, out_dir=folders.out,
                            in_dir=folders.inputs, presets_dir=folders.presets, audio=False)
    with Bridge(engine, options) as bridge:
        client = SimpleUDPClient("127.0.0.1", bridge.port)
        client.send_message("/indie/tempo", [150.0])
        client.send_message("/indie/set", ["bars", 1])
        client.send_message("/indie/melody/note", [62, 100])
        client.send_message("/indie/generate", ["a string quartet", 0, 11, "e2e"])
        job, path, seconds = listener.replies.wait("/indie/done", timeout=30)
        assert job == "e2e" and seconds == pytest.approx(4 * 60 / 150)  # OSC float32
        audio, rate = sf.read(path, dtype="float32")
        assert rate == engine.sample_rate and len(audio) == round(1.6 * rate)
        meta = json.loads(Path(path).with_suffix(".json").read_text())
        params = meta["params"]
        assert params["seed"] == 11 and params["bars"] == 1 and params["bpm"] == 150.0
        assert params["melody"][0][0] == 62
        # The same request through the engine directly gives the same samples.
        direct = engine.generate("a string quartet", bars=1, bpm=150.0, seed=11,
                                 melody=[tuple(n) for n in params["melody"]])
        assert np.abs(direct.audio - audio).max() < 1e-3  # 16-bit file

        sf.write(folders.inputs / "bounce.wav", audio, rate)
        client.send_message("/indie/continue", ["bounce.wav", 0.5, 3, "cont"])
        job, path, seconds = listener.replies.wait("/indie/done", lambda a: a[0] == "cont",
                                                   timeout=30)
        assert seconds == 0.5 and len(sf.read(path)[0]) == rate // 2
        client.send_message("/indie/set", ["pattern", "spiral"])
        client.send_message("/indie/generate", ["x", 0.2, 1, "bad"])
        error = listener.replies.wait("/indie/error", lambda a: a[0] == "bad", timeout=10)
        assert error[1] == "bad_request" and "spiral" in error[2]


def test_live_mode_with_the_real_engine_through_jack(jack_server, folders, replies):
    """Chunks of the tiny engine continue each other (continue_from) without an underrun."""
    from bridge.jack_probe import JackRecorder
    from bridge.osc.addresses import parse_message

    engine = tiny_engine()
    contexts = []
    stream = engine.stream

    def spy(prompt, **kwargs):
        contexts.append(kwargs.get("continue_from"))
        return stream(prompt, **kwargs)

    engine.stream = spy
    options = BridgeOptions(port=0, reply_port=9, out_dir=folders.out, audio=True,
                            audio_device="system", presets_dir=folders.presets)
    with Bridge(engine, options) as bridge:
        session = bridge.session
        session._send = session.worker.reply = replies
        recorder = JackRecorder("PortAudio:out_0", seconds=5.0, server=jack_server)
        try:
            for address, args in (("/indie/set", ["live_chunk_seconds", 0.5]),
                                  ("/indie/set", ["prompt", "a harp"]),
                                  ("/indie/live", [1])):
                session.handle(parse_message(address, args), None)
            recorder.start()
            replies.wait("/indie/started")
            time.sleep(1.2)
            session.handle(parse_message("/indie/melody/note", [69, 100]), None)
            time.sleep(0.8)
            underruns = bridge.audio.stats().underruns
            session.handle(parse_message("/indie/live", [0]), None)
            replies.wait("/indie/cancelled")
        finally:
            recorder.close()
    assert session.live.stats.chunks >= 3 and session.live.stats.restarts == 1
    assert underruns == 0
    # From the third chunk on, each continues the last second that was queued to play.
    assert any(isinstance(c, np.ndarray) and len(c) > engine.sample_rate // 2 for c in contexts)
    assert np.abs(recorder.audio()).max() > 1e-3  # the random codec makes some sound
