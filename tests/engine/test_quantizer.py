"""Residual vector quantizer: round trip, EMA learning, k-means, dead codes, gradients."""

import pytest
import torch

from engine.quantizer import QuantizerConfig, ResidualVectorQuantizer, squared_distances


def _latents(batch=4, dim=8, frames=100, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, frames, generator=generator)  # [B, D, T]


def _error(quantizer, x, stages=None):
    codes = quantizer.encode(x)[:, :stages]
    return (quantizer.decode(codes) - x).pow(2).mean().item()


def _trained(config, x, steps=1, seed=0):
    torch.manual_seed(seed)
    quantizer = ResidualVectorQuantizer(config).train()
    for _ in range(steps):
        quantizer(x)
    return quantizer.eval()


def test_round_trip_equals_quantized_output_in_eval_mode():
    x = _latents()
    quantizer = _trained(QuantizerConfig(num_codebooks=3, codebook_size=32, dim=8), x)
    out = quantizer(x)
    codes = quantizer.encode(x)
    assert out.codes.shape == codes.shape == (4, 3, 100)
    assert out.codes.dtype == torch.int64
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(quantizer.decode(codes), out.quantized, atol=1e-5, rtol=1e-5)
    assert out.quantized.shape == x.shape
    for stream in (out.residuals, out.stage_quantized, out.stage_inputs):
        assert stream.shape == (4, 3, 100, 8)
    # r_k = r_{k-1} - q_k, q_k summed over stages is the quantized output.
    torch.testing.assert_close(out.stage_inputs[:, 1:], out.residuals[:, :-1])
    torch.testing.assert_close(out.stage_inputs - out.stage_quantized, out.residuals)
    torch.testing.assert_close(out.stage_quantized.sum(1), out.quantized.transpose(1, 2),
                               atol=1e-5, rtol=1e-5)


def test_commitment_is_mean_stage_error():
    x = _latents()
    quantizer = _trained(QuantizerConfig(num_codebooks=2, codebook_size=16, dim=8), x)
    out = quantizer(x)
    expected = (out.stage_inputs - out.stage_quantized).pow(2).mean()
    torch.testing.assert_close(out.commitment, expected)


def test_more_stages_lower_the_error():
    x = _latents()
    quantizer = _trained(QuantizerConfig(num_codebooks=4, codebook_size=32, dim=8), x)
    errors = [_error(quantizer, x, k) for k in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.6 * x.pow(2).mean().item()


def test_kmeans_init_beats_random_init():
    x = _latents()
    base = {"num_codebooks": 2, "codebook_size": 32, "dim": 8, "dead_code_threshold": 0.0}
    kmeans = _trained(QuantizerConfig(**base, kmeans_init=True), x)
    random = _trained(QuantizerConfig(**base, kmeans_init=False), x)
    assert bool(kmeans.codebooks[0].initialized)
    assert _error(kmeans, x) < 0.7 * _error(random, x)


def test_kmeans_with_fewer_vectors_than_codes():
    x = _latents(batch=1, frames=10)  # 10 vectors, 64 codes: sampled with replacement
    quantizer = _trained(QuantizerConfig(num_codebooks=1, codebook_size=64, dim=8), x)
    assert _error(quantizer, x) < 1e-10


def test_ema_moves_codewords_toward_the_data():
    x = _latents() + 3.0  # far from the N(0, 1) random codebook
    config = QuantizerConfig(num_codebooks=1, codebook_size=16, dim=8, kmeans_init=False,
                             dead_code_threshold=0.0, ema_decay=0.8)
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(config)
    before = _error(quantizer.eval(), x)
    quantizer.train()
    for _ in range(20):
        quantizer(x)
    assert _error(quantizer.eval(), x) < 0.5 * before
    # A used codeword sits near the mean of the vectors assigned to it.
    rows = x.transpose(1, 2).reshape(-1, 8)
    codes = quantizer.encode(x).reshape(-1)
    code = int(torch.bincount(codes).argmax())
    embedding = quantizer.codebooks[0].embedding[code]
    assert (embedding - rows[codes == code].mean(0)).norm() < 0.5


def test_dead_codes_are_replaced_by_current_inputs():
    x = _latents()
    config = QuantizerConfig(num_codebooks=1, codebook_size=16, dim=8, kmeans_init=False,
                             dead_code_threshold=2.0)
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(config).train()
    codebook = quantizer.codebooks[0]
    codebook.embedding[1:] = 100.0  # unreachable: never chosen, so they die
    quantizer(x)
    stats = quantizer.last_stats
    assert stats.dead_replaced[0] >= 15
    rows = x.transpose(1, 2).reshape(-1, 8)
    replaced = codebook.embedding[1:]
    distance = (replaced[:, None] - rows[None]).abs().amax(-1).min(1).values  # [15]
    assert distance.max() == 0  # each is an input vector
    assert stats.as_log()["vq/dead_replaced/0"] == float(stats.dead_replaced[0])


def test_straight_through_gradient_reaches_the_input_unchanged():
    x = _latents()
    quantizer = _trained(QuantizerConfig(num_codebooks=3, codebook_size=16, dim=8), x)
    x = x.clone().requires_grad_(True)
    out = quantizer.train()(x)
    grad = torch.randn_like(x)
    out.quantized.backward(grad)
    torch.testing.assert_close(x.grad, grad)
    for buffer in quantizer.buffers():
        assert not buffer.requires_grad and buffer.grad is None


def test_codebooks_are_buffers_not_parameters():
    quantizer = ResidualVectorQuantizer(QuantizerConfig(num_codebooks=2, codebook_size=8, dim=4))
    assert list(quantizer.parameters()) == []
    names = {name for name, _ in quantizer.named_buffers()}
    for k in range(2):
        for field in ("embedding", "cluster_size", "embedding_sum", "initialized"):
            assert f"codebooks.{k}.{field}" in names


def test_eval_mode_changes_no_buffer():
    x = _latents()
    quantizer = ResidualVectorQuantizer(QuantizerConfig(num_codebooks=2, codebook_size=16, dim=8))
    quantizer.eval()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer(x)
    quantizer.encode(x)
    after = quantizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not bool(quantizer.codebooks[0].initialized)  # no k-means outside training
    assert quantizer.last_stats.dead_replaced.sum() == 0


def test_training_is_deterministic_given_the_rng_state():
    x = _latents()
    config = QuantizerConfig(num_codebooks=2, codebook_size=64, dim=8)
    first = _trained(config, x, steps=3, seed=7).state_dict()
    second = _trained(config, x, steps=3, seed=7).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_stats_report_usage():
    x = _latents()
    quantizer = _trained(QuantizerConfig(num_codebooks=2, codebook_size=16, dim=8), x)
    quantizer(x)
    stats = quantizer.last_stats
    assert stats.perplexity.shape == stats.used_codes.shape == (2,)
    assert 1.0 <= float(stats.perplexity[0]) <= 16.0 + 1e-4
    assert set(stats.as_log()) >= {"vq/perplexity/0", "vq/used_codes/1", "vq/dead_replaced/1"}


def test_squared_distances_match_cdist():
    a, b = torch.randn(7, 5), torch.randn(3, 5)
    torch.testing.assert_close(squared_distances(a, b), torch.cdist(a, b).pow(2),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad", [{"num_codebooks": 0}, {"ema_decay": 1.0}, {"epsilon": 0.0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        QuantizerConfig(**bad)
