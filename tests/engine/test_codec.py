"""The assembled codec: shapes, gradients, save/load, and streaming decode == offline decode."""

import dataclasses
import io

import pytest
import torch

from engine.codec import Codec, CodecConfig, StreamDecoder
from engine.config import from_dict, to_dict
from engine.quantizer import QuantizerConfig

TINY = CodecConfig(base_channels=4, latent_dim=16,
                   quantizer=QuantizerConfig(num_codebooks=3, codebook_size=32, dim=16))
# The spectral layout: stft encoder and istft decoder at the frame rate.
SPECTRAL = dataclasses.replace(TINY, encoder="stft", decoder="istft", decoder_dim=24,
                               decoder_layers=3)




def _codec(config=TINY, seed=0):
    torch.manual_seed(seed)
    return Codec(config)


def _audio(batch=2, samples=32000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 1, samples, generator=generator)  # [B, 1, N]


def test_interface_properties():
    codec = _codec()
    assert codec.frame_rate == 50.0
    assert codec.hop_length == 640
    assert codec.num_codebooks == 3
    assert codec.cardinality == 32
    assert codec.sample_rate == 32000


def test_one_second_gives_fifty_frames_and_decodes_back():
    codec = _codec()
    codec.train()(_audio())  # k-means initialisation
    codec.eval()
    codes = codec.encode(_audio())
    assert codes.shape == (2, 3, 50) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    audio = codec.decode(codes)
    assert audio.shape == (2, 1, 50 * 640)
    torch.testing.assert_close(audio, codec(_audio()).audio, atol=1e-5, rtol=1e-5)


def test_forward_gives_finite_streams_of_the_right_shapes():
    codec = _codec().train()
    out = codec(_audio())
    assert out.audio.shape == (2, 1, 32000)
    assert out.codes.shape == (2, 3, 50)
    assert out.latents.shape == (2, 16, 50)
    assert out.commitment.dim() == 0
    for stream in (out.residuals, out.quantized, out.stage_inputs):
        assert stream.shape == (2, 3, 50, 16)
        assert torch.isfinite(stream).all()
    assert torch.isfinite(out.audio).all() and torch.isfinite(out.commitment)
    assert bool(codec.quantizer.codebooks[2].initialized)


def test_lengths_off_the_hop_are_padded_then_cropped():
    codec = _codec().eval()
    audio = _audio(batch=1, samples=1000)
    assert codec(audio).audio.shape == (1, 1, 1000)
    codes = codec.encode(audio)
    assert codes.shape[-1] == 2  # ceil(1000 / 640)
    assert codec.decode(codes).shape == (1, 1, 1280)
    with pytest.raises(ValueError, match="expected audio"):
        codec.encode(torch.zeros(1, 1000))


def test_independence_gradient_reaches_encoder_only():
    codec = _codec().train()
    out = codec(_audio())
    out.residuals.pow(2).mean().backward()
    encoder_grads = [p.grad for p in codec.encoder.parameters()]
    assert all(g is not None for g in encoder_grads)
    assert sum(g.abs().sum() for g in encoder_grads) > 0
    assert all(p.grad is None for p in codec.decoder.parameters())
    assert all(not b.requires_grad and b.grad is None for b in codec.quantizer.buffers())


def test_reconstruction_gradient_reaches_encoder_and_decoder():
    codec = _codec().train()
    out = codec(_audio())
    (out.audio.abs().mean() + out.commitment).backward()
    for module in (codec.encoder, codec.decoder):
        assert all(p.grad is not None for p in module.parameters())


def test_rebuilt_from_config_and_state_dict_gives_identical_outputs():
    codec = _codec(seed=1).train()
    codec(_audio())
    codec.eval()
    buffer = io.BytesIO()
    torch.save({"config": to_dict(codec.config), "state_dict": codec.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    config = from_dict(CodecConfig, checkpoint["config"])
    assert config == codec.config
    torch.manual_seed(2)  # different random weights before loading
    clone = Codec(config)
    clone.load_state_dict(checkpoint["state_dict"])
    clone.eval()
    audio = _audio(seed=3)
    assert torch.equal(clone.encode(audio), codec.encode(audio))
    assert torch.equal(clone(audio).audio, codec(audio).audio)


def _stream(decoder: StreamDecoder, codes, generator):
    outputs, start, size = [], 0, 1  # the first chunk is a single frame
    while start < codes.shape[-1]:
        outputs.append(decoder.step(codes[..., start:start + size]))
        start += size
        size = int(torch.randint(0, 6, (1,), generator=generator))
    return torch.cat(outputs, dim=-1)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("lstm_layers", [0, 2])
def test_streaming_decode_equals_offline_decode(batch, lstm_layers):
    activation = "elu" if lstm_layers else "leaky_relu"  # both nonlinearities, streamed
    config = CodecConfig(base_channels=4, latent_dim=16, lstm_layers=lstm_layers,
                         residual_layers=2, activation=activation,
                         quantizer=QuantizerConfig(num_codebooks=3, codebook_size=32, dim=16))
    codec = _codec(config).eval()
    codes = torch.randint(0, 32, (batch, 3, 37), generator=torch.Generator().manual_seed(batch))
    offline = codec.decode(codes)
    decoder = codec.stream_decoder(batch)
    streamed = _stream(decoder, codes, torch.Generator().manual_seed(0))
    assert streamed.shape == offline.shape == (batch, 1, 37 * 640)
    assert (streamed - offline).abs().max() < 1e-4
    decoder.reset()
    frame_by_frame = torch.cat([decoder.step(codes[..., t:t + 1]) for t in range(37)], -1)
    assert (frame_by_frame - offline).abs().max() < 1e-4
    assert decoder.frames == 37


def test_streaming_needs_a_causal_codec():
    config = CodecConfig(base_channels=4, latent_dim=16, causal=False,
                         quantizer=QuantizerConfig(num_codebooks=2, codebook_size=16, dim=16))
    codec = _codec(config).eval()
    assert codec.decode(torch.zeros(1, 2, 3, dtype=torch.long)).shape == (1, 1, 1920)
    with pytest.raises(ValueError, match="causal"):
        codec.stream_decoder(1)


def test_config_checks_latent_dim_against_quantizer():
    with pytest.raises(ValueError, match="latent_dim"):
        CodecConfig(latent_dim=32)
    assert CodecConfig().hop_length == 640


def test_stream_decoders_leave_the_codec_untouched():
    codec = _codec().eval()
    keys = list(codec.state_dict())
    codes = torch.randint(0, 32, (1, 3, 6), generator=torch.Generator().manual_seed(0))
    offline = codec.decode(codes)
    first, second = codec.stream_decoder(1), codec.stream_decoder(1)
    torch.testing.assert_close(first.step(codes), second.step(codes))
    assert list(codec.state_dict()) == keys
    assert torch.equal(codec.decode(codes), offline)
    assert all(p.requires_grad for p in codec.parameters())


@pytest.mark.parametrize("batch", [1, 2])
def test_spectral_codec_streams_exactly_one_hop_late(batch):
    codec = _codec(SPECTRAL).eval()
    assert codec.latency == 640 and _codec().latency == 0
    codes = torch.randint(0, 32, (batch, 3, 23), generator=torch.Generator().manual_seed(batch))
    offline = codec.decode(codes)
    decoder = codec.stream_decoder(batch)
    streamed = _stream(decoder, codes, torch.Generator().manual_seed(1))
    assert streamed.shape == offline.shape == (batch, 1, 23 * 640)
    assert (streamed - offline).abs().max() < 1e-4
    # Output chunk t depends on frames <= t only: changing frame 10 leaves chunks 0..9 alone.
    changed = codes.clone()
    changed[..., 10] = (changed[..., 10] + 1) % 32
    other = codec.decode(changed)
    assert torch.equal(other[..., : 10 * 640], offline[..., : 10 * 640])
    assert not torch.equal(other[..., 10 * 640: 11 * 640], offline[..., 10 * 640: 11 * 640])


def test_spectral_forward_undoes_the_latency():
    codec = _codec(SPECTRAL).eval()
    audio = _audio(batch=1, samples=20 * 640)
    out = codec(audio)
    delayed = codec.decode(out.codes)  # [1, 1, 20 * 640], one hop late
    assert out.audio.shape == audio.shape
    assert torch.allclose(out.audio[..., : 19 * 640], delayed[..., 640:], atol=1e-5)


def test_spectral_encoder_is_causal_and_gradients_reach_it():
    codec = _codec(SPECTRAL).train()
    audio = _audio(batch=1, samples=16 * 640)
    later = audio.clone()
    later[..., 10 * 640:] += 0.5  # a change from frame 10 on
    with torch.no_grad():
        a, b = codec.encoder(audio), codec.encoder(later)
    assert torch.equal(a[..., :10], b[..., :10]) and not torch.equal(a[..., 10:], b[..., 10:])
    out = codec(audio)
    out.residuals.pow(2).mean().backward()
    assert all(p.grad is not None for p in codec.encoder.parameters())
    assert all(p.grad is None for p in codec.decoder.parameters())
