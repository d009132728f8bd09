"""Shipped weights: safetensors files with a JSON manifest beside them.

A manifest carries the model's config (so that loading rebuilds the model from it), and its
provenance: data, steps, training time, evaluation numbers. Loading never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.atomic import atomic_path, write_json_atomic
from engine.codec import Codec, CodecConfig
from engine.config import from_dict, to_dict

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CODEC = WEIGHTS_DIR / "codec.safetensors"


def manifest_path(weights: str | Path) -> Path:
    """`codec.safetensors` → `codec.json`."""
    return Path(weights).with_suffix(".json")


def export_codec(codec: Codec, path: str | Path, provenance: dict[str, Any]) -> Path:
    """Write the codec's weights (fp32: small, and the decoder is sensitive) and its manifest."""
    path = Path(path)
    tensors = {name: tensor.detach().contiguous().clone()
               for name, tensor in codec.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(manifest_path(path), {"model": "codec", "config": to_dict(codec.config),
                                            **provenance})
    return path


def load_codec(path: str | Path | None = None) -> Codec:
    """Load a codec from safetensors + manifest (the shipped default when `path` is None)."""
    path = Path(path) if path else DEFAULT_CODEC
    manifest = manifest_path(path)
    if not path.is_file() or not manifest.is_file():
        raise FileNotFoundError(f"codec weights need {path} and {manifest}")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    codec = Codec(from_dict(CodecConfig, meta["config"], source=str(manifest)))
    codec.load_state_dict(load_file(str(path)))
    codec.eval()
    return codec


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint as saved by the trainer (weights_only: no pickle from the file)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def codec_from_checkpoint(checkpoint: dict[str, Any], source: str = "<checkpoint>") -> Codec:
    """The codec inside a training checkpoint, rebuilt from its config, in eval mode."""
    config = from_dict(CodecConfig, checkpoint["config"]["codec"], source=source)
    codec = Codec(config)
    codec.load_state_dict(checkpoint["codec"])
    codec.eval()
    return codec


def load_codec_checkpoint(path: str | Path) -> Codec:
    """The codec inside a training checkpoint (`checkpoint.pt` of a run)."""
    return codec_from_checkpoint(read_checkpoint(path), source=str(path))
