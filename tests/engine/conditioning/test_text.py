"""The real MiniLM text encoder, loaded offline from its package."""

import torch

from engine.conditioning.text import TEXT_DIM, TextEncoder


def test_token_embeddings_of_a_batch_of_prompts():
    encoder = TextEncoder()
    prompts = ["a solo piano chorale in C major, slow", "brass", ""]
    embeddings, mask = encoder.encode(prompts)
    assert embeddings.dtype == torch.float32 and mask.dtype == torch.bool
    assert embeddings.shape[0] == 3 and embeddings.shape[2] == TEXT_DIM
    lengths = mask.sum(dim=1).tolist()
    assert lengths[0] > lengths[1] > lengths[2] >= 2  # [CLS] and [SEP] even for ""
    assert (embeddings[~mask] == 0).all() and (embeddings[mask].norm(dim=-1) > 1).all()
    # Padding does not change a prompt's embeddings; different words give different ones.
    alone, _ = encoder.encode(["brass"])
    assert torch.allclose(alone[0], embeddings[1, :lengths[1]], atol=1e-5)
    other, _ = TextEncoder().encode(["strings"])
    assert not torch.allclose(other[0, 1], alone[0, 1], atol=1e-2)


def test_long_prompts_are_cut():
    embeddings, mask = TextEncoder(max_tokens=8).encode(["word " * 50])
    assert embeddings.shape[1] == 8 and mask.all()
