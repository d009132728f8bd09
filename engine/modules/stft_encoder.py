"""An encoder that reads log-magnitude spectra at the frame rate (the istft decoder's mirror).

SEANet's encoder must learn its own filterbank from the waveform with a handful of channels at
32 kHz; on a CPU budget it was the slow part of learning pitch. This encoder starts from what
a filterbank would find: one log-magnitude spectrum per frame (an FFT of `encoder_fft_hops`
hops, causal: frame t ends where its hop ends), then SEANet residual units at 50 Hz and a
projection to the latent size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.modules.seanet import frame_rate_stack

if TYPE_CHECKING:  # type hints only (no import cycle)
    from engine.codec import CodecConfig


class STFTEncoder(nn.Module):
    """Waveform [B, C, N] (N a multiple of the hop) -> latents [B, D, N // hop].

    Args:
        config: the codec config; uses channels, hop_length, encoder_fft_hops, decoder_dim,
            decoder_layers, latent_dim, kernel_size, causal, weight_norm, activation.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.hop = config.hop_length
        self.n_fft = config.encoder_fft_hops * self.hop
        self.causal = config.causal
        bins = self.n_fft // 2 + 1
        self.model = frame_rate_stack(config, config.channels * bins, config.latent_dim,
                                      in_kernel=1, out_kernel=config.kernel_size)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True),
                             persistent=False)

    def spectra(self, audio: Tensor) -> Tensor:
        """[B, C, N] -> log-magnitudes [B, C * bins, N // hop], frame t ending at (t+1) * hop."""
        b, c, n = audio.shape
        context = self.n_fft - self.hop
        # Causal: frame t sees the n_fft samples up to the end of its own hop. Centred: the
        # window is centred on the hop.
        left = context if self.causal else context // 2
        padded = F.pad(audio.reshape(b * c, n), (left, context - left))
        frames = padded.unfold(-1, self.n_fft, self.hop)  # [B*C, T, n_fft]
        magnitude = torch.fft.rfft(frames * self.window).abs()  # [B*C, T, bins]
        log_magnitude = torch.log(magnitude.clamp(min=1e-5))
        return log_magnitude.reshape(b, c, -1, log_magnitude.shape[-1]).permute(
            0, 1, 3, 2).reshape(b, -1, log_magnitude.shape[1])  # [B, C * bins, T]

    def forward(self, audio: Tensor) -> Tensor:
        """[B, C, N] -> [B, D, N // hop]."""
        return self.model(self.spectra(audio))
