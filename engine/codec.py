"""The neural audio codec: SEANet encoder, residual vector quantizer, SEANet decoder (EnCodec).

The language model sees the codec only through `encode`, `decode`, `frame_rate`,
`num_codebooks` and `cardinality`; the bridge plays audio while it is generated through
`stream_decoder`, which decodes a few frames at a time with the same result as `decode`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from math import prod
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from engine.modules.istft_decoder import ISTFTDecoder
from engine.modules.seanet import SEANetDecoder, SEANetEncoder
from engine.modules.stft_encoder import STFTEncoder
from engine.quantizer import QuantizerConfig, ResidualVectorQuantizer


@dataclass(frozen=True)
class CodecConfig:
    """Codec settings; the defaults meet the real-time budget of a 2-core CPU.

    Channels double at every downsampling stage: base_channels at the audio rate, then
    base * 2, base * 4, ... up to base * 2**len(strides) before the latent projection.

    Args:
        sample_rate: audio rate in Hz.
        channels: audio channels.
        base_channels: encoder/decoder channels at the audio rate.
        strides: downsampling factors in encoder order (audio -> latent); the decoder mirrors
            them. Their product is the hop length (640 -> 50 frames/s at 32 kHz).
        latent_dim: D, the latent size, equal to quantizer.dim.
        kernel_size: kernel of the first and last convolution of encoder and decoder.
        residual_kernel_size: kernel of the dilated convolution in each residual unit.
        residual_layers: residual units per stage, with dilations 1, 2, 4, ... (dilation_base).
        dilation_base: growth of the dilation from one residual unit to the next.
        residual_compress: a residual unit's hidden channels are its channels // this.
        lstm_layers: LSTM layers (with a skip) at the latent rate, as in SEANet; 0 for none.
        causal: causal padding everywhere; required for the streaming decoder.
        weight_norm: weight-normalised convolutions (as in EnCodec and DAC).
        activation: "leaky_relu" (slope 0.1, as in HiFi-GAN) or "elu" (SEANet's). The
            default is LeakyReLU because ELU's exponential costs ~20% of encode + decode time on
            a 2-core CPU, which took the codec below the 30x real-time budget on one core.
        encoder: "seanet" (strided convolutions from the waveform, as in EnCodec) or "stft"
            (log-magnitude spectra, then residual units at the frame rate, see
            engine/modules/stft_encoder.py).
        encoder_fft_hops: FFT size of the stft encoder, in hops.
        decoder: "seanet" (transposed convolutions up to the audio rate, as in EnCodec) or
            "istft" (residual units at the frame rate and an inverse-STFT head, see
            engine/modules/istft_decoder.py; trains several times faster on a CPU, one hop of
            latency).
        decoder_dim: channels of the frame-rate layers (istft decoder, stft encoder).
        decoder_layers: residual units of each frame-rate stack (dilations 1, 2, 4, 8, 1, ...).
        quantizer: the residual vector quantizer.
    """

    sample_rate: int = 32000
    channels: int = 1
    base_channels: int = 16
    strides: tuple[int, ...] = (8, 5, 4, 4)
    latent_dim: int = 64
    kernel_size: int = 7
    residual_kernel_size: int = 3
    residual_layers: int = 1
    dilation_base: int = 2
    residual_compress: int = 2
    lstm_layers: int = 0
    causal: bool = True
    weight_norm: bool = True
    activation: Literal["elu", "leaky_relu"] = "leaky_relu"
    encoder: Literal["seanet", "stft"] = "seanet"
    encoder_fft_hops: int = 2
    decoder: Literal["seanet", "istft"] = "seanet"
    decoder_dim: int = 256
    decoder_layers: int = 8
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if self.latent_dim != self.quantizer.dim:
            raise ValueError(f"latent_dim {self.latent_dim} must equal quantizer.dim "
                             f"{self.quantizer.dim}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        for name in ("sample_rate", "channels", "base_channels", "kernel_size",
                     "residual_kernel_size", "dilation_base", "residual_compress",
                     "decoder_dim", "encoder_fft_hops"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.residual_layers < 0 or self.lstm_layers < 0:
            raise ValueError("residual_layers and lstm_layers must be >= 0")

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return prod(self.strides)


class CodecOutput(NamedTuple):
    """What one training forward pass of the codec gives."""

    audio: Tensor  # [B, C, N] reconstruction, cropped to the input length
    codes: Tensor  # [B, K, T] int64
    commitment: Tensor  # scalar: mean over stages of mean((r_{k-1} - sg(q_k))^2)
    latents: Tensor  # [B, D, T] encoder output, before quantization
    residuals: Tensor  # [B, K, T, D] r_k = r_{k-1} - sg(q_k); gradient reaches the encoder
    quantized: Tensor  # [B, K, T, D] q_k with a straight-through gradient
    stage_inputs: Tensor  # [B, K, T, D] r_{k-1}

    def stream(self, kind: str) -> Tensor:
        """The per-codebook stream the independence loss reads, by its config name
        ("residual", "quantized" or "stage_input"): `[B, K, T, D]`."""
        return getattr(self, _STREAM_FIELDS[kind])


_STREAM_FIELDS = {"residual": "residuals", "quantized": "quantized", "stage_input": "stage_inputs"}


class Codec(nn.Module):
    """SEANet encoder + RVQ + SEANet decoder, as in EnCodec (Défossez et al. 2022).

    Inputs whose length N is not a multiple of the hop are padded with zeros on the right to
    T = ceil(N / hop) frames; `forward` crops its reconstruction back to N samples, while
    `decode` always returns T * hop samples.

    Args:
        config: the codec settings; `Codec(config)` rebuilds a saved model before
            `load_state_dict`.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = STFTEncoder(config) if config.encoder == "stft" else SEANetEncoder(config)
        self.quantizer = ResidualVectorQuantizer(config.quantizer)
        self.decoder = make_decoder(config)

    @property
    def sample_rate(self) -> int:
        """Audio samples per second."""
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per frame of codes."""
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        """Frames of codes per second of audio."""
        return self.config.sample_rate / self.config.hop_length

    @property
    def latency(self) -> int:
        """Samples by which `decode` and the stream lag the input (0, or a hop for istft)."""
        return getattr(self.decoder, "latency", 0)

    @property
    def num_codebooks(self) -> int:
        """K, codebooks per frame."""
        return self.config.quantizer.num_codebooks

    @property
    def cardinality(self) -> int:
        """N, codes per codebook."""
        return self.config.quantizer.codebook_size

    def forward(self, audio: Tensor) -> CodecOutput:
        """Encode, quantize (updating the codebooks in training mode) and decode.

        Args:
            audio: [B, C, N] waveform.

        Returns:
            A CodecOutput; the quantizer's usage statistics are in `self.quantizer.last_stats`.
        """
        length = audio.shape[-1]
        latents = self.encoder(self._pad(audio))  # [B, D, T]
        q = self.quantizer(latents)
        if self.latency:  # one more hop, then drop the delay: aligned with the input
            audio_hat = self.decoder(q.quantized, flush=True)[..., self.latency:]
        else:
            audio_hat = self.decoder(q.quantized)
        audio_hat = audio_hat[..., :length]  # [B, C, N]
        return CodecOutput(
            audio=audio_hat,
            codes=q.codes,
            commitment=q.commitment,
            latents=latents,
            residuals=q.residuals,
            quantized=q.stage_quantized,
            stage_inputs=q.stage_inputs,
        )

    @torch.no_grad()
    def encode(self, audio: Tensor) -> Tensor:
        """Waveform [B, C, N] -> codes [B, K, ceil(N / hop)] int64."""
        return self.quantizer.encode(self.encoder(self._pad(audio)))

    def decode_latents(self, codes: Tensor) -> Tensor:
        """Codes [B, K, T] -> quantized latents [B, D, T] (sum of codewords)."""
        return self.quantizer.decode(codes)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, K, T] -> waveform [B, C, T * hop], `latency` samples late."""
        return self.decoder(self.quantizer.decode(codes))

    def stream_decoder(self, batch_size: int = 1) -> StreamDecoder:
        """A decoder that turns codes into audio a few frames at a time (causal codecs only)."""
        return StreamDecoder(self, batch_size)

    def _pad(self, audio: Tensor) -> Tensor:
        """Check [B, C, N] and zero-pad N up to a multiple of the hop."""
        if audio.dim() != 3 or audio.shape[1] != self.config.channels:
            raise ValueError(f"expected audio [B, {self.config.channels}, N], "
                             f"got {tuple(audio.shape)}")
        extra = -audio.shape[-1] % self.hop_length
        return F.pad(audio, (0, extra)) if extra else audio  # [B, C, T * hop]


class StreamDecoder:
    """Decodes codes chunk by chunk; concatenated outputs equal `Codec.decode` of all codes.

    Each step runs only the new frames through the decoder, whose convolutions keep their
    left context and overlap-add tails in this object's state. The decoder is a snapshot taken
    when the StreamDecoder is made, with weight norm folded into plain weights (a third of the
    per-step cost otherwise); make a new StreamDecoder after changing the codec's weights.
    A step has a fixed overhead of ~2 ms on a 2-core CPU, so chunks of a few frames are
    cheaper per frame than single frames.

    Args:
        codec: a causal codec.
        batch_size: B, the number of parallel streams.
    """

    def __init__(self, codec: Codec, batch_size: int = 1) -> None:
        if not codec.config.causal:
            raise ValueError("streaming decoding needs a causal codec (config.causal=True); "
                             "use Codec.decode on the whole sequence instead")
        self.codec = codec
        self.batch_size = batch_size
        self.decoder = _frozen_copy(codec)
        self.frames = 0
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next step starts a new stream."""
        weight = next(self.decoder.parameters())
        with torch.inference_mode():
            self._state = self.decoder.init_state(self.batch_size, weight.device, weight.dtype)
        self.frames = 0

    def step(self, codes: Tensor) -> Tensor:
        """Decode the next frames.

        Args:
            codes: [B, K, t] int64, t >= 0 new frames.

        Returns:
            [B, C, t * hop] audio that follows the previous step's output.
        """
        if codes.dim() != 3 or codes.shape[0] != self.batch_size:
            raise ValueError(f"expected codes [{self.batch_size}, K, t], got {tuple(codes.shape)}")
        with torch.inference_mode():
            latents = self.codec.quantizer.decode(codes)  # [B, D, t]
            audio = self.decoder.step(latents, self._state)  # [B, C, t * hop]
        self.frames += codes.shape[-1]
        return audio


def make_decoder(config: CodecConfig) -> SEANetDecoder | ISTFTDecoder:
    """The decoder that `config.decoder` names."""
    return ISTFTDecoder(config) if config.decoder == "istft" else SEANetDecoder(config)


def _frozen_copy(codec: Codec) -> SEANetDecoder | ISTFTDecoder:
    """An eval-mode copy of the codec's decoder, weight norm folded into plain weights.

    Built afresh rather than deep-copied: removing a parametrization from a deep copy would
    edit the class it shares with the original module and break the codec.
    """
    source = codec.decoder
    state = {k: v for k, v in source.state_dict().items() if ".parametrizations." not in k}
    for name, module in source.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = module.weight.detach()
    frozen = make_decoder(dataclasses.replace(codec.config, weight_norm=False))
    frozen.load_state_dict(state)
    weight = next(source.parameters())
    return frozen.to(weight.device, weight.dtype).eval().requires_grad_(False)
