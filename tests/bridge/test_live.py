"""Live mode through a real JACK server: chunk after chunk with no gap and no click, a played
note steering the next audio within half a second, and stop."""

import time

import numpy as np

from bridge.live import LiveLoop, equal_power
from bridge.osc.addresses import parse_message
from tests.bridge.fake_engine import pitch_frequency


def send(session, address, *args):
    session.handle(parse_message(address, list(args)), None)


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


def test_equal_power_crossfade_keeps_power():
    fade_out, fade_in = equal_power(320)
    assert np.allclose(fade_out**2 + fade_in**2, 1.0, atol=1e-6)
    assert fade_out[0] > 0.99 and fade_in[-1] > 0.99


def test_live_chunks_play_without_gaps_clicks_and_follow_notes(jack_bridge, replies,
                                                                fake_engine):
    bridge, recorder = jack_bridge
    session = bridge.session
    fake_engine.step_seconds = 0.004  # 5x faster than real time
    send(session, "/indie/set", "live_chunk_seconds", 0.5)
    send(session, "/indie/set", "seed", 0)  # chunk n has seed n: a different tone per chunk
    recorder.start()
    send(session, "/indie/live", 1)
    replies.wait("/indie/started")
    time.sleep(2.0)
    note_time = time.monotonic()
    send(session, "/indie/melody/note", 81, 100)  # A5: 880 Hz
    time.sleep(1.0)
    send(session, "/indie/live", 0)
    replies.wait("/indie/cancelled")
    live: LiveLoop = session.live
    assert live.stats.chunks >= 5 and live.stats.restarts == 1
    assert bridge.audio.stats().underruns == 0  # no gap between chunks
    audio = recorder.audio()
    start = int(np.argmax(np.abs(audio) > 1e-4))
    end = start + int(2.8 * recorder.rate)
    playing = audio[start:end]
    # No silent stretch (a gap) and no jump (a click): the sine's largest step at 48 kHz for
    # these pitches is below 0.04; a hard cut between chunks would jump up to 0.6.
    window = recorder.rate // 100
    # Only a JACK cycle that ran late (an xrun, counted by the recorder) may break the signal.
    silent = sum(np.abs(playing[i:i + window]).max() < 0.1
                 for i in range(0, len(playing) - window, window))
    clicks = np.flatnonzero(np.abs(np.diff(playing)) >= 0.05)
    assert silent <= recorder.xruns and len(clicks) <= 2 * recorder.xruns, (
        silent, len(clicks), recorder.xruns)
    # The note reaches the audio: 880 Hz within half a second of the note.
    note_sample = start + int((note_time - recorder.first_sound_time) * recorder.rate)
    late = audio[note_sample + recorder.rate // 2:note_sample + recorder.rate * 3 // 4]
    assert abs(dominant_frequency(late, recorder.rate) - pitch_frequency(81)) < 10
    assert live.stats.note_to_chunk and live.stats.note_to_chunk[-1] < 0.1


def test_a_refused_live_take_can_be_started_again(jack_bridge, replies):
    bridge, _ = jack_bridge
    session = bridge.session
    send(session, "/indie/set", "pattern", "spiral")
    send(session, "/indie/live", 1)
    error = replies.wait("/indie/error")
    assert error[1] == "bad_request" and "spiral" in error[2]
    replies.wait("/indie/cancelled")
    send(session, "/indie/set", "pattern", "")
    send(session, "/indie/live", 1)
    replies.wait("/indie/started", lambda args: args[0] != error[0])
    send(session, "/indie/live", 0)
    assert len(replies.of("/indie/cancelled")) >= 1
