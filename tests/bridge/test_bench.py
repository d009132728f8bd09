"""`indie bench bridge` end to end with the fake engine (a few seconds of live mode)."""

import shutil

import numpy as np
import pytest

from bridge.bench_bridge import bench_bridge, longest_zero_run


def test_longest_zero_run():
    audio = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0], np.float32)
    assert longest_zero_run(audio) == (3, 4)
    assert longest_zero_run(np.ones(4, np.float32)) == (0, 0)


@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd is not installed")
def test_bench_bridge_measures_everything(fake_engine):
    fake_engine.step_seconds = 0.004
    result = bench_bridge(fake_engine, stream_seconds=3.0, repeats=1, chunk_seconds=0.5)
    assert 0 < result["first_audio_ms"]["median"] < 300
    assert 0 < result["cancel_ack_ms"]["max"] < 100
    live = result["live"]
    assert live["chunks"] >= 4 and live["underruns"] == 0
    assert live["note_to_audio_ms"]["runs"] and live["note_to_audio_ms"]["max"] < 500
