"""SEANet convolutional encoder and decoder (Tagliasacchi et al. 2020, as used by EnCodec).

Channel layout: the encoder starts with `base_channels` at the audio rate and doubles the
channels at every downsampling stage, so with strides (8, 5, 4, 4) and base 16 it runs
16 -> 32 -> 64 -> 128 -> 256 channels before projecting to the latent dimension. `strides` are
listed in encoder order (audio -> latent); the decoder mirrors them, so with the defaults the
largest factor (8) sits next to the waveform, where each channel is most expensive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from engine.modules.conv import (
    StreamableConv1d,
    StreamableConvTranspose1d,
    StreamableSequential,
)

if TYPE_CHECKING:  # the codec config names the layout; imported for type hints only (no cycle)
    from engine.codec import CodecConfig


def make_activation(name: str) -> nn.Module:
    """The nonlinearity `name`: "elu" (SEANet, EnCodec) or "leaky_relu" (slope 0.1, HiFi-GAN).

    ELU needs an exponential per sample: on a 2-core CPU it costs ~7x a LeakyReLU, about a fifth
    of the codec's time at the audio rate.
    """
    if name == "elu":
        return nn.ELU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1)
    raise ValueError(f"unknown activation {name!r} (expected 'elu' or 'leaky_relu')")


@dataclass
class LSTMState:
    """Hidden and cell state of a streamed LSTM."""

    h: Tensor  # [layers, B, C]
    c: Tensor  # [layers, B, C]


class StreamableLSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection, as in SEANet / EnCodec.

    Args:
        dim: channels C, kept by the LSTM.
        num_layers: stacked LSTM layers.
    """

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.lstm = nn.LSTM(dim, dim, num_layers, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] -> [B, C, T], starting from a zero state."""
        y, _ = self.lstm(x.transpose(1, 2))  # [B, T, C]
        return x + y.transpose(1, 2)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> LSTMState:
        """A zero state, as in the offline forward."""
        shape = (self.num_layers, batch_size, self.lstm.hidden_size)
        return LSTMState(torch.zeros(shape, device=device, dtype=dtype),
                         torch.zeros(shape, device=device, dtype=dtype))

    def step(self, x: Tensor, state: LSTMState) -> Tensor:
        """Continue the sequence with the next chunk [B, C, n]; updates `state` in place."""
        if x.shape[-1] == 0:
            return x
        y, (state.h, state.c) = self.lstm(x.transpose(1, 2), (state.h, state.c))  # [B, n, C]
        return x + y.transpose(1, 2)


class ResidualUnit(nn.Module):
    """SEANet residual unit: act, dilated conv to C // compress, act, 1x1 conv back, plus skip.

    Args:
        dim: channels C.
        kernel_size: kernel of the dilated convolution.
        dilation: its dilation.
        compress: hidden channels are dim // compress.
        causal: causal padding.
        weight_norm: weight-normalised convolutions.
        activation: "elu" or "leaky_relu" (see `make_activation`).
    """

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int,
                 causal: bool, weight_norm: bool, activation: str = "elu") -> None:
        super().__init__()
        hidden = max(dim // compress, 1)
        self.block = StreamableSequential(
            make_activation(activation),
            StreamableConv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal,
                             weight_norm=weight_norm),
            make_activation(activation),
            StreamableConv1d(hidden, dim, 1, causal=causal, weight_norm=weight_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, N] -> [B, C, N]."""
        return x + self.block(x)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> list:
        """The state of the convolutional branch (the skip needs none)."""
        return self.block.init_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: list) -> Tensor:
        """Stream the next chunk [B, C, n] -> [B, C, n]."""
        return x + self.block.step(x, state)


def _residual_stack(config: CodecConfig, dim: int) -> list[nn.Module]:
    """The residual units of one stage, with growing dilations."""
    return [
        ResidualUnit(dim, config.residual_kernel_size, config.dilation_base**j,
                     config.residual_compress, config.causal, config.weight_norm,
                     config.activation)
        for j in range(config.residual_layers)
    ]


def frame_rate_stack(config: CodecConfig, in_channels: int, out_channels: int,
                     in_kernel: int, out_kernel: int) -> StreamableSequential:
    """Projection in, `decoder_layers` residual units of `decoder_dim` channels (dilations
    1, 2, 4, 8, 1, ...), projection out: the body of the frame-rate encoder and decoder."""
    conv = {"causal": config.causal, "weight_norm": config.weight_norm}
    dim = config.decoder_dim
    return StreamableSequential(
        StreamableConv1d(in_channels, dim, in_kernel, **conv),
        *(ResidualUnit(dim, config.residual_kernel_size, config.dilation_base ** (j % 4), 1,
                       config.causal, config.weight_norm, config.activation)
          for j in range(config.decoder_layers)),
        make_activation(config.activation),
        StreamableConv1d(dim, out_channels, out_kernel, **conv),
    )


class SEANetEncoder(nn.Module):
    """SEANet encoder: waveform [B, C, N] -> latents [B, D, N // hop] (SEANet / EnCodec).

    Args:
        config: the codec config (channels, strides, kernels, causal, ...).
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        conv = {"causal": config.causal, "weight_norm": config.weight_norm}
        dim = config.base_channels
        layers: list[nn.Module] = [
            StreamableConv1d(config.channels, dim, config.kernel_size, **conv)
        ]
        for stride in config.strides:
            layers += _residual_stack(config, dim)
            layers += [make_activation(config.activation),
                       StreamableConv1d(dim, 2 * dim, 2 * stride, stride=stride, **conv)]
            dim *= 2
        if config.lstm_layers > 0:
            layers.append(StreamableLSTM(dim, config.lstm_layers))
        layers += [make_activation(config.activation),
                   StreamableConv1d(dim, config.latent_dim, config.kernel_size, **conv)]
        self.model = StreamableSequential(*layers)

    def forward(self, audio: Tensor) -> Tensor:
        """[B, C, N] -> [B, D, N // hop]."""
        return self.model(audio)


class SEANetDecoder(nn.Module):
    """SEANet decoder: latents [B, D, T] -> waveform [B, C, T * hop], streamable if causal.

    Args:
        config: the codec config (channels, strides, kernels, causal, ...).
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        conv = {"causal": config.causal, "weight_norm": config.weight_norm}
        dim = config.base_channels * 2 ** len(config.strides)
        layers: list[nn.Module] = [
            StreamableConv1d(config.latent_dim, dim, config.kernel_size, **conv)
        ]
        if config.lstm_layers > 0:
            layers.append(StreamableLSTM(dim, config.lstm_layers))
        for stride in reversed(config.strides):
            layers += [make_activation(config.activation),
                       StreamableConvTranspose1d(dim, dim // 2, 2 * stride, stride, **conv)]
            dim //= 2
            layers += _residual_stack(config, dim)
        layers += [make_activation(config.activation),
                   StreamableConv1d(dim, config.channels, config.kernel_size, **conv)]
        self.model = StreamableSequential(*layers)

    def forward(self, latents: Tensor) -> Tensor:
        """[B, D, T] -> [B, C, T * hop]."""
        return self.model(latents)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> list:
        """A fresh streaming state (raises RuntimeError for a non-causal decoder)."""
        return self.model.init_state(batch_size, device, dtype)

    def step(self, latents: Tensor, state: list) -> Tensor:
        """Decode the next frames [B, D, n] -> [B, C, n * hop]; updates `state` in place."""
        return self.model.step(latents, state)
