"""Shipped-weights files: a checksum in the manifest guards every load."""

import json

import pytest
import torch

from engine.codec import Codec, CodecConfig
from engine.quantizer import QuantizerConfig
from engine.weights import WeightsError, export_codec, load_codec, manifest_path

TINY = CodecConfig(base_channels=4, latent_dim=8,
                   quantizer=QuantizerConfig(num_codebooks=2, codebook_size=8, dim=8))


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    return export_codec(Codec(TINY), tmp_path / "codec.safetensors", {"steps": 1})


def test_exported_weights_load_back(exported):
    assert load_codec(exported).config == TINY


def test_a_modified_file_is_refused(exported):
    data = bytearray(exported.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    exported.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum"):
        load_codec(exported)


def test_a_manifest_without_checksum_is_refused(exported):
    manifest = manifest_path(exported)
    meta = json.loads(manifest.read_text())
    del meta["sha256"]
    manifest.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="sha256"):
        load_codec(exported)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_codec(tmp_path / "nothing.safetensors")
