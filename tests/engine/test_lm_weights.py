"""LM weights: safetensors + manifest round trip, fp16 storage, missing files."""

import json

import pytest
import torch

from engine.weights import export_lm, load_lm, manifest_path
from tests.tiny_engine import tiny_lm


def test_export_and_load_give_the_same_model(tmp_path):
    lm = tiny_lm("flatten")
    path = export_lm(lm, tmp_path / "lm.safetensors", {"note": "test", "steps": 3})
    meta = json.loads(manifest_path(path).read_text())
    assert meta["model"] == "lm" and meta["steps"] == 3 and meta["dtype"] == "float32"
    loaded = load_lm(path)
    assert loaded.config == lm.config and not loaded.training
    for name, tensor in lm.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_half_precision_weights_are_half_the_size_and_close(tmp_path):
    lm = tiny_lm()
    full = export_lm(lm, tmp_path / "full.safetensors", {})
    half = export_lm(lm, tmp_path / "half.safetensors", {}, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_lm(half)
    assert loaded.heads.weight.dtype == torch.float32
    assert torch.allclose(loaded.heads.weight, lm.heads.weight, atol=1e-3)


def test_missing_weights_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="lm.safetensors"):
        load_lm(tmp_path / "lm.safetensors")
