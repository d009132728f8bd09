import numpy as np
import torch

from engine.audio import write_audio
from engine.data.audio_bank import AudioBank
from engine.data.manifest import ClipRow, write_manifest
from tests.conftest import LABELS


def make_split(folder, lengths, rate=32000):
    """Clips whose samples encode (clip index, position) so crops can be traced back."""
    rows = []
    for index, length in enumerate(lengths):
        ramp = (index + 1) * 0.1 + np.linspace(0, 0.05, length, dtype=np.float32)
        write_audio(folder / "audio" / f"c{index}.flac", ramp, rate)
        rows.append(ClipRow(f"c{index}", f"audio/c{index}.flac", length / rate, "train",
                            f"p{index}", 0.0, "a caption", LABELS, (), None))
    return write_manifest(folder / "train.jsonl", rows)


def test_bank_holds_every_clip_and_caches_it(tmp_path):
    manifest = make_split(tmp_path, [32000, 16000, 48000])
    bank = AudioBank.load(manifest)
    assert bank.ids == ["c0", "c1", "c2"]
    assert list(bank.starts) == [0, 32000, 48000, 96000]
    assert bank.seconds == 3.0
    assert (tmp_path / "cache" / "train-32000-all.npy").is_file()
    again = AudioBank.load(manifest)
    assert isinstance(again.samples, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.samples), bank.samples)
    first_second = AudioBank.load(manifest, max_hours=1 / 3600)
    assert first_second.ids == ["c0"]


def test_random_crops_stay_inside_one_clip_and_are_seeded(tmp_path):
    bank = AudioBank.load(make_split(tmp_path, [32000, 16000, 48000]))
    crops = bank.random_crops(64, 8000, torch.Generator().manual_seed(0))
    assert crops.shape == (64, 1, 8000) and crops.dtype == torch.float32
    # Each clip's samples lie in its own band [0.1 (i+1), 0.1 (i+1) + 0.05]: one band per crop.
    bands = torch.floor(crops[:, 0, :] * 10 + 1e-3)
    assert (bands == bands[:, :1]).all()
    assert set(bands[:, 0].tolist()) == {1.0, 2.0, 3.0}
    same = bank.random_crops(64, 8000, torch.Generator().manual_seed(0))
    assert torch.equal(crops, same)


def test_short_clips_are_padded_and_fixed_crops_repeat(tmp_path):
    bank = AudioBank.load(make_split(tmp_path, [4000, 4000]))
    crops = bank.random_crops(4, 8000, torch.Generator().manual_seed(1))
    assert (crops[:, 0, 4000:] == 0).all() and (crops[:, 0, :4000] > 0).all()
    assert torch.equal(bank.fixed_crops(2, 3000), bank.fixed_crops(2, 3000))
