"""`indie bench soak` on a small scale: clients through a real JACK server, with the fake engine."""

import shutil

import pytest

from bridge.bench_soak import SoakConfig, bench_soak
from tests.bridge.fake_engine import FakeEngine


@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd is not installed")
def test_short_soak_answers_everything_and_leaks_nothing():
    config = SoakConfig(seconds=20.0, clients=3, seed=1, sample_every=2.0, warmup_seconds=6.0)
    result = bench_soak(FakeEngine(step_seconds=0.002), config)
    assert result["jobs"] >= 6 and set(result["actions"]) >= {"generate", "cancel", "live"}
    assert result["unanswered_jobs"] == []
    assert result["job_outcomes"].get("done", 0) >= 1
    assert result["files"]["clips"] == result["job_outcomes"]["done"]
    assert result["checks"] == {name: True for name in result["checks"]}, result["checks"]
    assert result["passed"]
