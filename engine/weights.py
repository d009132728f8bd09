"""Shipped weights: safetensors files with a JSON manifest beside them.

A manifest carries the model's config (so that loading rebuilds the model from it), its
provenance (data, steps, training time, evaluation numbers) and the SHA-256 of the weights file,
checked before the file is read: a corrupt or tampered file is refused. Loading never unpickles
anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.atomic import atomic_path, write_json_atomic
from engine.codec import Codec, CodecConfig
from engine.config import from_dict, to_dict
from engine.lm import LanguageModel, LMConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CODEC = WEIGHTS_DIR / "codec.safetensors"
DEFAULT_LM = WEIGHTS_DIR / "lm.safetensors"


class WeightsError(ValueError):
    """Weights that must not be loaded: a checksum that does not match the manifest, or a file
    or manifest that does not parse or does not fit its model."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of weights `path`, after checking that the file matches its checksum."""
    manifest = manifest_path(path)
    if not path.is_file() or not manifest.is_file():
        raise FileNotFoundError(f"weights need {path} and {manifest}")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as e:  # invalid JSON or not UTF-8
        raise WeightsError(f"{manifest} is not a readable JSON manifest ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise WeightsError(f"{manifest} is not a manifest (a JSON object with a config)")
    expected = meta.get("sha256")
    if expected is None:
        raise WeightsError(f"{manifest} has no sha256: re-export the weights")
    if sha256_of(path) != expected:
        raise WeightsError(f"{path} does not match the checksum in {manifest} "
                           "(corrupt or modified): refusing to load it")
    return meta


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
                                            "sha256": sha256_of(path), **provenance})
    return path


def load_codec(path: str | Path | None = None) -> Codec:
    """Load a codec from safetensors + manifest (the shipped default when `path` is None)."""
    path = Path(path) if path else DEFAULT_CODEC
    meta = read_manifest(path)
    codec = Codec(from_dict(CodecConfig, meta["config"], source=str(manifest_path(path))))
    _load_tensors(codec, path)
    codec.eval()
    return codec


def export_lm(lm: LanguageModel, path: str | Path, provenance: dict[str, Any],
              half: bool = False) -> Path:
    """Write the LM's weights (fp16 when `half`: half the size) and its manifest."""
    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    tensors = {name: tensor.detach().to(dtype).contiguous().clone()
               for name, tensor in lm.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(manifest_path(path), {"model": "lm", "config": to_dict(lm.config),
                                            "dtype": str(dtype).removeprefix("torch."),
                                            "sha256": sha256_of(path), **provenance})
    return path


def load_lm(path: str | Path | None = None) -> LanguageModel:
    """Load an LM from safetensors + manifest (the shipped default when `path` is None).

    Weights stored in fp16 are widened to fp32: on a CPU fp32 matmuls are the fast ones.
    """
    path = Path(path) if path else DEFAULT_LM
    meta = read_manifest(path)
    lm = LanguageModel(from_dict(LMConfig, meta["config"], source=str(manifest_path(path))))
    _load_tensors(lm, path)
    lm.eval()
    return lm


def _load_tensors(model: torch.nn.Module, path: Path) -> None:
    """Load a checked safetensors file into `model` (fp16 widened to the model's fp32).

    Raises:
        WeightsError: a corrupt header, a truncated file, or tensors that do not fit the
            model the manifest describes (a checksum only proves the file is the one listed).
    """
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors' SafetensorError: a header that does not parse
        raise WeightsError(f"{path} is not a readable safetensors file ({e})") from None
    try:
        model.load_state_dict({name: tensor.float() if tensor.dtype == torch.float16 else tensor
                               for name, tensor in tensors.items()})
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path} does not fit the model in its manifest ({problem})") from None


def lm_from_checkpoint(checkpoint: dict[str, Any], source: str = "<checkpoint>") -> LanguageModel:
    """The LM inside a training checkpoint (`indie train lm`), rebuilt from its config."""
    config = from_dict(LMConfig, checkpoint["config"]["lm"], source=source)
    lm = LanguageModel(config)
    lm.load_state_dict(checkpoint["state_dict"])
    lm.eval()
    return lm


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
