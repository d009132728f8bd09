"""A decoder that works at the frame rate and ends in an inverse STFT (Vocos-style head).

The SEANet decoder upsamples 640x with transposed convolutions and spends most of its compute
at the audio rate, where a 2-core CPU trains it slowly: after 2,000 steps it still returned a
smeared spectral envelope. This decoder keeps SEANet's residual units but runs them on the
50 Hz latent frames, then predicts one complex spectrum per frame (log-magnitude and phase,
as in Vocos, Siuzdak 2023) and overlap-adds its inverse FFT. Every layer sees 640x fewer
time steps, so a step costs a fraction of SEANet's and the same minutes buy many more steps.

Frames and timing. The FFT size is two hops, and a periodic Hann window at 50% overlap sums
to one, so the overlap-add needs no normalisation. Frame t's waveform covers the samples
[t * hop, (t + 2) * hop) of the *output* timeline: output chunk t is the first half of frame
t plus the second half of frame t - 1. Each output chunk therefore depends only on frames
<= t (causal and streamable), and the output runs one hop (20 ms at 32 kHz) behind the input:
this decoder's `latency` is one hop. `Codec.forward` undoes the delay for training losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from engine.modules.seanet import frame_rate_stack

if TYPE_CHECKING:  # type hints only (no import cycle)
    from engine.codec import CodecConfig

_MAX_LOG_MAGNITUDE = math.log(100.0)  # as Vocos: keeps exp() finite early in training


@dataclass
class ISTFTState:
    """Streaming state: the body's convolution state and the previous frame's second half."""

    body: list
    tail: Tensor  # [B, C, hop]


class ISTFTDecoder(nn.Module):
    """Latents [B, D, T] -> waveform [B, C, T * hop], one hop late (see the module docstring).

    Args:
        config: the codec config; uses latent_dim, channels, hop_length, decoder_dim,
            decoder_layers, dilation_base, kernel_size, causal, weight_norm, activation.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.hop = config.hop_length
        self.channels = config.channels
        self.n_fft = 2 * self.hop
        self.bins = self.hop + 1  # rfft bins of a 2-hop frame
        self.body = frame_rate_stack(config, config.latent_dim, 2 * self.bins * self.channels,
                                     in_kernel=config.kernel_size, out_kernel=1)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True),
                             persistent=False)

    @property
    def latency(self) -> int:
        """Samples by which the output lags the input."""
        return self.hop

    def frames(self, latents: Tensor, body_state: list | None = None) -> Tensor:
        """Latents [B, D, T] -> windowed frame waveforms [B, C, T, n_fft]."""
        x = self.body(latents) if body_state is None else self.body.step(latents, body_state)
        b, _, t = x.shape
        x = x.reshape(b, self.channels, 2, self.bins, t).permute(0, 1, 4, 2, 3)  # [B,C,T,2,F]
        log_magnitude, phase = x.unbind(dim=3)  # [B, C, T, F] each
        magnitude = torch.exp(log_magnitude.clamp(max=_MAX_LOG_MAGNITUDE))
        spectrum = torch.polar(magnitude, phase)  # complex [B, C, T, F]
        return torch.fft.irfft(spectrum, n=self.n_fft) * self.window  # [B, C, T, n_fft]

    def forward(self, latents: Tensor, flush: bool = False) -> Tensor:
        """Decode a whole sequence.

        Args:
            latents: [B, D, T].
            flush: also return the last frame's second half (one more hop).

        Returns:
            [B, C, T * hop] (or [B, C, (T + 1) * hop] with flush), one hop late.
        """
        frames = self.frames(latents)  # [B, C, T, 2 * hop]
        heads, tails = frames[..., : self.hop], frames[..., self.hop:]  # [B, C, T, hop] each
        previous = torch.cat([torch.zeros_like(tails[:, :, :1]), tails[:, :, :-1]], dim=2)
        chunks = heads + previous  # [B, C, T, hop]
        if flush:
            chunks = torch.cat([chunks, tails[:, :, -1:]], dim=2)  # [B, C, T + 1, hop]
        b, c, t, _ = chunks.shape
        return chunks.reshape(b, c, t * self.hop)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> ISTFTState:
        """A fresh stream: nothing before the first frame."""
        return ISTFTState(self.body.init_state(batch_size, device, dtype),
                          torch.zeros(batch_size, self.channels, self.hop, device=device,
                                      dtype=dtype))

    def step(self, latents: Tensor, state: ISTFTState) -> Tensor:
        """Decode the next frames [B, D, n] -> [B, C, n * hop]; updates `state` in place."""
        n = latents.shape[-1]
        if n == 0:
            return latents.new_zeros(latents.shape[0], self.channels, 0)
        frames = self.frames(latents, state.body)  # [B, C, n, 2 * hop]
        heads, tails = frames[..., : self.hop], frames[..., self.hop:]
        previous = torch.cat([state.tail.unsqueeze(2), tails[:, :, :-1]], dim=2)
        state.tail = tails[:, :, -1]
        chunks = heads + previous  # [B, C, n, hop]
        return chunks.reshape(chunks.shape[0], self.channels, n * self.hop)
