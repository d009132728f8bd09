"""Shared fixtures: a tiny synthetic dataset in the layout `indie dataset build` writes."""

from pathlib import Path

import numpy as np
import pytest

from engine.audio import write_audio
from engine.data.captions import ClipLabels
from engine.data.manifest import SPLITS, ClipRow, write_manifest

LABELS = ClipLabels("piano", "solo piano", ("piano",), 100, "moderate", "C major", "major", "4/4",
                    "chorale", "", "bach", "soft", 0)


def write_tone_dataset(folder: Path, clips_per_split: int = 3, seconds: float = 1.0,
                       rate: int = 32000) -> Path:
    """Clips of harmonic tones at seeded pitches, with train/valid/test manifests."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for split in SPLITS:
        rows = []
        for index in range(clips_per_split):
            pitch = rng.integers(48, 84)
            f0 = 440 * 2 ** ((pitch - 69) / 12)
            tone = sum(0.2 / h * np.sin(2 * np.pi * f0 * h * t) for h in (1, 2, 3))
            tone *= np.minimum(1, 10 * t) * np.exp(-t)  # attack and decay
            name = f"{split}{index}"
            write_audio(folder / "audio" / f"{name}.flac", tone.astype(np.float32), rate)
            rows.append(ClipRow(name, f"audio/{name}.flac", seconds, split, f"p{name}", 0.0,
                                "a caption", LABELS, (), None))
        write_manifest(folder / f"{split}.jsonl", rows)
    return folder


@pytest.fixture(scope="session")
def tone_dataset(tmp_path_factory) -> Path:
    return write_tone_dataset(tmp_path_factory.mktemp("tones"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Torch on one thread, seeded, during each test.

    Tiny models run fastest on one thread; on a busy 2-core machine OpenMP threads waiting for
    each other made small kernels 10-50× slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
