"""Streamable 1-d convolutions: ordinary modules offline, stateful step functions when streaming.

Streaming state is explicit: `init_state(batch_size)` returns a small mutable object that the
caller owns and passes to every `step(x, state)`. A module therefore holds no stream of its own,
and one model can serve several streams at once. The offline `forward` and a sequence of `step`
calls over any chunking of the same input give the same output (up to float rounding).

Causal convolutions pad only on the left, with zeros, by `(kernel - 1) * dilation + 1 - stride`
samples: an input of N samples gives N // stride outputs, offline and streamed alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

# Modules that act on each sample independently: streamed by calling them on each chunk.
POINTWISE = (nn.ELU, nn.Identity, nn.LeakyReLU, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh)


@dataclass
class ConvState:
    """Input a streamed convolution has seen but not yet turned into outputs."""

    buffer: Tensor  # [B, C_in, L] left context plus any partial stride


@dataclass
class ConvTransposeState:
    """Output of a streamed transposed convolution that later frames still add to."""

    overhang: Tensor  # [B, C_out, kernel - stride] overlap-add tail, without bias


class StreamableConv1d(nn.Module):
    """Conv1d with causal or centred zero padding that can also run chunk by chunk.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: taps per output sample.
        stride: downsampling factor; `(kernel_size - 1) * dilation + 1` must be >= stride.
        dilation: spacing between taps.
        causal: pad on the left only (streamable); otherwise split the padding evenly.
        weight_norm: reparametrise the weight as direction times norm (EnCodec / DAC habit).
        bias: add a learned bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = True, weight_norm: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        if self.effective_kernel < stride:
            raise ValueError(f"kernel span {self.effective_kernel} is shorter than stride {stride}")
        self.stride = stride
        self.causal = causal
        self.padding_total = self.effective_kernel - stride
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                         dilation=dilation, bias=bias)
        self.conv = apply_weight_norm(conv) if weight_norm else conv

    def forward(self, x: Tensor) -> Tensor:
        """Convolve a whole signal.

        Args:
            x: [B, C_in, N].

        Returns:
            [B, C_out, N // stride].
        """
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        frames = x.shape[-1] // self.stride
        conv = self.conv
        if conv.dilation[0] == 1 and conv.out_channels == 1:  # see `_conv`
            return _conv_to_one_channel(x, conv.weight, conv.bias, self.stride, left, right)
        if conv.dilation[0] == 1 and conv.in_channels == 1:
            return self._conv(F.pad(x, (left, right)))  # [B, C_out, N // stride]
        # Pad inside the convolution (no copy of x): `left` on both sides, then drop the few
        # extra outputs the surplus right padding makes; they come after the wanted ones.
        y = F.conv1d(x, conv.weight, conv.bias, self.stride, left, conv.dilation)
        return y[..., :frames]  # [B, C_out, N // stride]

    def _conv(self, x: Tensor) -> Tensor:
        """Unpadded convolution of x [B, C_in, L] -> [B, C_out, (L - span) // stride + 1]."""
        conv = self.conv
        if conv.dilation[0] == 1 and x.shape[-1] >= self.effective_kernel:
            # oneDNN is slow when one side has a single channel (the audio-rate first and last
            # layers); the same sums as one matrix product are 3-6x faster on a CPU.
            if conv.in_channels == 1:
                return _conv_from_one_channel(x, conv.weight, conv.bias, self.stride)
            if conv.out_channels == 1:
                return _conv_to_one_channel(x, conv.weight, conv.bias, self.stride)
        return conv(x)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> ConvState:
        """Start a stream: the left padding of the offline forward, as zeros."""
        if not self.causal:
            raise RuntimeError("a non-causal convolution cannot be streamed (it needs the future)")
        buffer = torch.zeros(batch_size, self.conv.in_channels, self.padding_total,
                             device=device, dtype=dtype)  # [B, C_in, padding_total]
        return ConvState(buffer)

    def step(self, x: Tensor, state: ConvState) -> Tensor:
        """Convolve the next chunk of a stream; updates `state` in place.

        Args:
            x: [B, C_in, n], any n >= 0.
            state: from `init_state`, then from previous steps.

        Returns:
            [B, C_out, m]: every output whose window is now complete (m = n for stride 1).
        """
        x = torch.cat([state.buffer, x], dim=-1)  # [B, C_in, L]
        length = x.shape[-1]
        if length < self.effective_kernel:
            state.buffer = x
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        frames = (length - self.effective_kernel) // self.stride + 1
        used = (frames - 1) * self.stride + self.effective_kernel
        y = self._conv(x[..., :used])  # [B, C_out, frames]
        state.buffer = x[..., frames * self.stride:]
        return y


class StreamableConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its overhang offline and overlap-adds it when streaming.

    Offline, T input frames give (T - 1) * stride + kernel samples; the `kernel - stride` extra
    samples are trimmed on the right (causal) or split between both ends, leaving T * stride.
    Streaming (causal only), each step emits exactly `n * stride` final samples and keeps the
    tail as an overlap-add buffer that the next frames complete. The offline pass computes the
    same sums in sub-pixel form (`_subpixel_conv_transpose`), several times faster on a CPU;
    the weight keeps the ConvTranspose1d layout [C_in, C_out, k], so checkpoints are standard.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: must be >= stride (2 * stride is the SEANet choice).
        stride: upsampling factor.
        causal: trim on the right only (streamable).
        weight_norm: reparametrise the weight as direction times norm.
        bias: add a learned bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 causal: bool = True, weight_norm: bool = False, bias: bool = True) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} is shorter than stride {stride}")
        self.stride = stride
        self.causal = causal
        self.trim_total = kernel_size - stride
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self.convtr = apply_weight_norm(conv) if weight_norm else conv

    def forward(self, x: Tensor) -> Tensor:
        """Upsample a whole signal.

        Args:
            x: [B, C_in, T].

        Returns:
            [B, C_out, T * stride].
        """
        weight, bias = self.convtr.weight, self.convtr.bias
        if self.causal:
            return _subpixel_conv_transpose(x, weight, bias, self.stride, causal=True)
        y = _subpixel_conv_transpose(x, weight, bias, self.stride, causal=False)
        right = self.trim_total // 2
        left = self.trim_total - right
        return y[..., left:y.shape[-1] - right]

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> ConvTransposeState:
        """Start a stream with an empty (zero) overlap-add buffer."""
        if not self.causal:
            raise RuntimeError("a non-causal transposed convolution cannot be streamed")
        overhang = torch.zeros(batch_size, self.convtr.out_channels, self.trim_total,
                               device=device, dtype=dtype)  # [B, C_out, kernel - stride]
        return ConvTransposeState(overhang)

    def step(self, x: Tensor, state: ConvTransposeState) -> Tensor:
        """Upsample the next frames of a stream; updates `state` in place.

        Args:
            x: [B, C_in, n], any n >= 0.
            state: from `init_state`, then from previous steps.

        Returns:
            [B, C_out, n * stride].
        """
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.convtr.out_channels, 0)
        # Without bias: the overhang is added to the next chunk, which must not get it twice.
        y = F.conv_transpose1d(x, self.convtr.weight, None, self.stride)  # [B, C_out, n*s + tail]
        tail = self.trim_total
        y = torch.cat([y[..., :tail] + state.overhang, y[..., tail:]], dim=-1)
        emitted = x.shape[-1] * self.stride
        state.overhang = y[..., emitted:]
        out = y[..., :emitted]  # [B, C_out, n * stride]
        if self.convtr.bias is not None:
            out = out + self.convtr.bias[:, None]
        return out


def _conv_from_one_channel(x: Tensor, weight: Tensor, bias: Tensor | None,
                           stride: int) -> Tensor:
    """conv1d with C_in = 1: x [B, 1, L], weight [C_out, 1, k] -> [B, C_out, T]."""
    windows = x[:, 0].unfold(-1, weight.shape[-1], stride).transpose(1, 2)  # [B, k, T] view
    if bias is None:
        return weight[:, 0] @ windows  # [C_out, k] @ [B, k, T] -> [B, C_out, T]
    return torch.baddbmm(bias[:, None], weight[:, 0].expand(x.shape[0], -1, -1), windows)


def _conv_to_one_channel(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                         left: int = 0, right: int = 0) -> Tensor:
    """conv1d with C_out = 1 and zero padding (left, right): project every tap, then add the k
    shifted rows; x itself is never padded (a copy of the widest tensor saved)."""
    k = weight.shape[-1]
    length = x.shape[-1]
    frames = (length + left + right - k) // stride + 1
    taps = weight[0].t() @ x  # [k, C_in] @ [B, C_in, L] -> [B, k, L]
    y = x.new_zeros(x.shape[0], frames)  # [B, T]
    for j in range(k):
        # Output f reads input f * stride + j - left, which must lie in [0, L).
        first = max(0, -(-(left - j) // stride))
        last = min(frames - 1, (length - 1 + left - j) // stride)
        if last >= first:
            start = first * stride + j - left
            y[:, first:last + 1] += taps[:, j, start:start + (last - first) * stride + 1:stride]
    y = y[:, None]  # [B, 1, T]
    return y if bias is None else y + bias[:, None]


def _subpixel_conv_transpose(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                             causal: bool) -> Tensor:
    """A transposed convolution computed as a convolution at the frame rate (sub-pixel form).

    With kernel k <= m * stride, output frame f (stride samples) is the sum over i < m of
    W_i x[f - i], W_i being taps [i * s, (i + 1) * s) of the kernel: an ordinary m-tap
    convolution with C_out * s output channels, then a reshuffle into time. It gives the same
    sums as conv_transpose1d, several times faster on a CPU.

    Args:
        x: [B, C_in, T].
        weight: [C_in, C_out, k], the ConvTranspose1d layout.
        bias: [C_out] or None.
        stride: s, the upsampling factor.
        causal: return the first T * s samples only (the causal trim), else all (T-1) * s + k.

    Returns:
        [B, C_out, T * s] if causal, else [B, C_out, (T - 1) * s + k].
    """
    c_in, c_out, k = weight.shape
    s = stride
    m = -(-k // s)
    weight = F.pad(weight, (0, m * s - k)).reshape(c_in, c_out, m, s)
    weight = weight.permute(1, 3, 0, 2).flip(-1).reshape(c_out * s, c_in, m)  # [C_out*s, C_in, m]
    if bias is not None:
        bias = bias.repeat_interleave(s)  # [C_out * s]
    x = F.pad(x, (m - 1, 0 if causal else m - 1))
    y = F.conv1d(x, weight, bias)  # [B, C_out * s, F]
    b, _, frames = y.shape
    y = y.reshape(b, c_out, s, frames).transpose(2, 3).reshape(b, c_out, frames * s)
    return y if causal else y[..., :(x.shape[-1] - 2 * (m - 1) - 1) * s + k]


def init_stream_state(module: nn.Module, batch_size: int, device: torch.device | None = None,
                      dtype: torch.dtype | None = None) -> Any:
    """The streaming state of `module` (None for pointwise modules).

    Raises:
        TypeError: `module` has neither `init_state` nor a pointwise type.
    """
    if hasattr(module, "init_state"):
        return module.init_state(batch_size, device, dtype)
    if isinstance(module, POINTWISE):
        return None
    raise TypeError(f"{type(module).__name__} cannot be streamed")


def stream_step(module: nn.Module, x: Tensor, state: Any) -> Tensor:
    """Run one streaming step of `module` (a plain call for pointwise modules)."""
    if state is None:
        return module(x)
    return module.step(x, state)


class StreamableSequential(nn.Sequential):
    """nn.Sequential whose children are streamable or pointwise; its state is a list."""

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> list[Any]:
        """One state per child, in order."""
        return [init_stream_state(m, batch_size, device, dtype) for m in self]

    def step(self, x: Tensor, state: list[Any]) -> Tensor:
        """Feed the chunk through every child's `step` in turn."""
        for module, module_state in zip(self, state, strict=True):
            x = stream_step(module, x, module_state)
        return x
