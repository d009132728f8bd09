"""Streamable convolutions and SEANet parts: offline maths, lengths, and streaming == offline."""

import io

import pytest
import torch
import torch.nn.functional as F

from engine.modules.conv import (
    StreamableConv1d,
    StreamableConvTranspose1d,
    StreamableSequential,
)
from engine.modules.seanet import ResidualUnit, StreamableLSTM


def _stream(module, x, generator, max_chunk=5):
    """Feed x [B, C, N] to module.step in random chunks (sizes 0..max_chunk, 1 included)."""
    state = module.init_state(x.shape[0])
    outputs, start, size = [], 0, 1  # the first chunk is a single frame
    while start < x.shape[-1]:
        outputs.append(module.step(x[..., start:start + size], state))
        start += size
        size = int(torch.randint(0, max_chunk + 1, (1,), generator=generator))
    return torch.cat(outputs, dim=-1)


CONV_CASES = [  # (in, out, kernel, stride, dilation)
    (3, 5, 7, 1, 1),
    (1, 6, 7, 1, 1),  # fast path: one input channel
    (6, 1, 7, 1, 1),  # fast path: one output channel
    (4, 6, 3, 1, 4),
    (4, 8, 8, 4, 1),
    (1, 4, 10, 5, 1),
    (5, 1, 4, 2, 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("causal", [True, False])
def test_conv_matches_padded_reference(case, causal):
    torch.manual_seed(0)
    cin, cout, k, s, d = case
    conv = StreamableConv1d(cin, cout, k, stride=s, dilation=d, causal=causal)
    x = torch.randn(2, cin, 203, requires_grad=True)
    y = conv(x)
    pad = (k - 1) * d + 1 - s
    left = pad if causal else pad - pad // 2
    x_ref = x.detach().clone().requires_grad_(True)
    ref = F.conv1d(F.pad(x_ref, (left, pad - left)), conv.conv.weight, conv.conv.bias, s,
                   dilation=d)
    assert y.shape == (2, cout, 203 // s) == ref.shape
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_causal_conv_streaming_equals_offline(case, batch):
    torch.manual_seed(1)
    cin, cout, k, s, d = case
    conv = StreamableConv1d(cin, cout, k, stride=s, dilation=d, causal=True)
    x = torch.randn(batch, cin, 157)
    with torch.no_grad():
        offline = conv(x)
        streamed = _stream(conv, x, torch.Generator().manual_seed(batch))
    assert streamed.shape == offline.shape == (batch, cout, 157 // s)
    assert (streamed - offline).abs().max() < 1e-4


TRANSPOSE_CASES = [(4, 3, 16, 8), (6, 2, 10, 5), (3, 3, 8, 4), (2, 4, 7, 3), (2, 1, 3, 3)]


@pytest.mark.parametrize("case", TRANSPOSE_CASES)
@pytest.mark.parametrize("causal", [True, False])
def test_transposed_conv_matches_trimmed_reference(case, causal):
    torch.manual_seed(2)
    cin, cout, k, s = case
    convtr = StreamableConvTranspose1d(cin, cout, k, s, causal=causal)
    x = torch.randn(2, cin, 19, requires_grad=True)
    y = convtr(x)
    x_ref = x.detach().clone().requires_grad_(True)
    full = convtr.convtr(x_ref)  # [B, C_out, (T - 1) * s + k]
    trim = k - s
    left = 0 if causal else trim - trim // 2
    ref = full[..., left:left + 19 * s]
    assert y.shape == (2, cout, 19 * s) == ref.shape
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", TRANSPOSE_CASES)
@pytest.mark.parametrize("batch", [1, 2, 4])
def test_causal_transposed_conv_streaming_equals_offline(case, batch):
    torch.manual_seed(3)
    cin, cout, k, s = case
    convtr = StreamableConvTranspose1d(cin, cout, k, s, causal=True)
    x = torch.randn(batch, cin, 41)
    with torch.no_grad():
        offline = convtr(x)
        streamed = _stream(convtr, x, torch.Generator().manual_seed(batch), max_chunk=4)
    assert streamed.shape == offline.shape == (batch, cout, 41 * s)
    assert (streamed - offline).abs().max() < 1e-4


def test_one_frame_at_a_time_gives_stride_samples_per_frame():
    convtr = StreamableConvTranspose1d(3, 2, 16, 8)
    state = convtr.init_state(2)
    with torch.no_grad():
        sizes = [convtr.step(torch.randn(2, 3, n), state).shape[-1] for n in (1, 0, 1, 3)]
    assert sizes == [8, 0, 8, 24]


def test_noncausal_layers_refuse_to_stream():
    with pytest.raises(RuntimeError, match="non-causal"):
        StreamableConv1d(2, 2, 3, causal=False).init_state(1)
    with pytest.raises(RuntimeError, match="non-causal"):
        StreamableConvTranspose1d(2, 2, 4, 2, causal=False).init_state(1)


def test_kernel_shorter_than_stride_is_rejected():
    with pytest.raises(ValueError):
        StreamableConv1d(1, 1, 2, stride=4)
    with pytest.raises(ValueError):
        StreamableConvTranspose1d(1, 1, 2, 4)


def test_weight_norm_streams_and_survives_state_dict():
    torch.manual_seed(4)
    net = StreamableSequential(
        StreamableConv1d(2, 6, 5, weight_norm=True),
        torch.nn.ELU(),
        StreamableConvTranspose1d(6, 3, 8, 4, weight_norm=True),
        ResidualUnit(3, 3, dilation=2, compress=2, causal=True, weight_norm=True),
    )
    x = torch.randn(2, 2, 33)
    with torch.no_grad():
        offline = net(x)
        streamed = _stream(net, x, torch.Generator().manual_seed(0))
    assert streamed.shape == (2, 3, 33 * 4)
    assert (streamed - offline).abs().max() < 1e-4

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(5)
    clone = StreamableSequential(
        StreamableConv1d(2, 6, 5, weight_norm=True),
        torch.nn.ELU(),
        StreamableConvTranspose1d(6, 3, 8, 4, weight_norm=True),
        ResidualUnit(3, 3, dilation=2, compress=2, causal=True, weight_norm=True),
    )
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(clone(x), offline)


@pytest.mark.parametrize("batch", [1, 3])
def test_lstm_and_residual_unit_stream(batch):
    torch.manual_seed(6)
    net = StreamableSequential(
        StreamableLSTM(4, num_layers=2),
        ResidualUnit(4, 3, dilation=4, compress=2, causal=True, weight_norm=False),
    )
    x = torch.randn(batch, 4, 40)
    with torch.no_grad():
        offline = net(x)
        streamed = _stream(net, x, torch.Generator().manual_seed(batch))
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() < 1e-4


def test_unstreamable_child_is_named():
    net = StreamableSequential(torch.nn.BatchNorm1d(2))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        net.init_state(1)
