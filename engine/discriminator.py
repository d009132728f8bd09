"""Multi-scale STFT discriminator and its hinge / feature-matching losses (EnCodec, Défossez 2022).

One small 2-D conv net per STFT scale looks at the complex spectrogram (real and imaginary parts
as two channels), with dilations along time and strides along frequency. The losses are pure
functions of the discriminator's outputs, named `adv/gen` and `adv/feat` for the weight dict.

How the trainer alternates the two steps (the `enabled` switch of the config gates both):

    terms = adversarial_terms(disc, pred, target)      # generator step; disc params frozen inside
    total = weighted_sum({**recon, **vq, **terms}, weights); total.backward(); opt_g.step()
    d_loss = discriminator_loss(disc(target), disc(pred.detach()))   # discriminator step
    opt_d.zero_grad(); d_loss.backward(); opt_d.step()

`pred.detach()` keeps the discriminator step from reaching the codec.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Settings of the MS-STFT discriminator and its optimiser."""

    enabled: bool = False  # the trainer's switch: no discriminator, no adversarial terms
    channels: int = 16
    windows: tuple[int, ...] = (2048, 1024, 512)  # one sub-discriminator each; hop = window // 4
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)


class DiscriminatorOutput(NamedTuple):
    """What one scale's discriminator says about a batch."""

    logits: Tensor  # [B, 1, frames, freq']: one real/fake score per time-frequency patch
    features: list[Tensor]  # hidden activations, each [B, channels, frames, freq_l]


# (time dilation, frequency stride) of the hidden dilated convs; kernel (3, 9) as in EnCodec.
_DILATED_LAYERS = ((1, 2), (2, 2), (4, 2))
_KERNEL = (3, 9)
_SLOPE = 0.2


def _conv(
    in_ch: int, out_ch: int, kernel: tuple[int, int], dilation: int = 1, stride: int = 1
) -> nn.Module:
    """Weight-normed 2-D conv over [B, C, time, freq], 'same' padded in time."""
    padding = (dilation * (kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    conv = nn.Conv2d(
        in_ch, out_ch, kernel, stride=(1, stride), dilation=(dilation, 1), padding=padding
    )
    return weight_norm(conv)


class STFTDiscriminator(nn.Module):
    """The discriminator for one STFT scale: complex spectrogram in, patch logits out."""

    def __init__(self, window: int, channels: int) -> None:
        super().__init__()
        self.window = window
        self.hop = window // 4
        self.register_buffer("hann", torch.hann_window(window), persistent=False)
        layers = [_conv(2, channels, _KERNEL)]
        for dilation, stride in _DILATED_LAYERS:
            layers.append(_conv(channels, channels, _KERNEL, dilation=dilation, stride=stride))
        layers.append(_conv(channels, channels, (3, 3)))
        self.layers = nn.ModuleList(layers)
        self.head = _conv(channels, 1, (3, 3))

    def forward(self, audio: Tensor) -> DiscriminatorOutput:
        """Score `audio` [B, 1, N] patch by patch.

        Args:
            audio: [B, 1, N] waveform.

        Returns:
            Logits [B, 1, frames, freq'] and the hidden feature maps.
        """
        spec = torch.stft(
            audio.reshape(-1, audio.shape[-1]),  # [B, N]
            n_fft=self.window,
            hop_length=self.hop,
            window=self.hann,
            center=True,
            normalized=True,
            return_complex=True,
        )  # [B, window // 2 + 1, frames]
        x = torch.stack([spec.real, spec.imag], dim=1)  # [B, 2, freq, frames]
        x = x.transpose(2, 3)  # [B, 2, frames, freq]: time first, strides act on freq
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _SLOPE)  # [B, channels, frames, freq_l]
            features.append(x)
        return DiscriminatorOutput(logits=self.head(x), features=features)


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator: one `STFTDiscriminator` per window size."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        if not config.windows:
            raise ValueError("DiscriminatorConfig.windows is empty")
        self.config = config
        self.scales = nn.ModuleList(STFTDiscriminator(w, config.channels) for w in config.windows)

    def forward(self, audio: Tensor) -> list[DiscriminatorOutput]:
        """Run every scale's discriminator.

        Args:
            audio: [B, 1, N] waveform (real audio or the codec's output).

        Returns:
            One DiscriminatorOutput per window, in config order.
        """
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected mono audio [B, 1, N], got shape {tuple(audio.shape)}")
        return [scale(audio) for scale in self.scales]


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off `requires_grad` on `module`'s parameters inside the block, then restore it.

    Autograd records at forward time which leaves need a gradient, so a forward pass run inside
    the block gives the module's parameters no gradient even when `backward()` runs later.
    """
    previous = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in previous:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in previous:
            p.requires_grad_(flag)


def discriminator_loss(
    real_outputs: Sequence[DiscriminatorOutput], fake_outputs: Sequence[DiscriminatorOutput]
) -> Tensor:
    """Hinge loss of the discriminator: mean over scales of relu(1 - D(real)) + relu(1 + D(fake)).

    Args:
        real_outputs: the discriminator on real audio.
        fake_outputs: the discriminator on `pred.detach()`.

    Returns:
        Scalar loss (each hinge is averaged over batch and patches).
    """
    per_scale = [
        F.relu(1 - real.logits).mean() + F.relu(1 + fake.logits).mean()
        for real, fake in zip(real_outputs, fake_outputs, strict=True)
    ]
    return torch.stack(per_scale).mean()


def generator_adversarial_loss(fake_outputs: Sequence[DiscriminatorOutput]) -> Tensor:
    """Hinge loss of the generator: mean over scales of relu(1 - D(fake)).

    Args:
        fake_outputs: the discriminator on the codec's output (not detached).

    Returns:
        Scalar loss.
    """
    return torch.stack([F.relu(1 - fake.logits).mean() for fake in fake_outputs]).mean()


def feature_matching_loss(
    real_outputs: Sequence[DiscriminatorOutput],
    fake_outputs: Sequence[DiscriminatorOutput],
    eps: float = 1e-8,
) -> Tensor:
    """Relative L1 between feature maps: mean |f_fake - f_real| / mean |f_real| per layer.

    Real features are detached; the normalisation makes every layer and scale count alike
    whatever its activation scale. The result is the mean over all layers of all scales.

    Args:
        real_outputs: the discriminator on real audio.
        fake_outputs: the discriminator on the codec's output.
        eps: keeps an all-zero real feature map from dividing by zero.

    Returns:
        Scalar loss (0 when fake and real features agree).
    """
    per_layer = []
    for real, fake in zip(real_outputs, fake_outputs, strict=True):
        for real_map, fake_map in zip(real.features, fake.features, strict=True):
            real_map = real_map.detach()
            scale = real_map.abs().mean() + eps
            per_layer.append((fake_map - real_map).abs().mean() / scale)
    return torch.stack(per_layer).mean()


def adversarial_terms(
    discriminator: MultiScaleSTFTDiscriminator, pred: Tensor, target: Tensor
) -> dict[str, Tensor]:
    """The generator step's adversarial terms, with the discriminator frozen.

    The discriminator's parameters are frozen (see `frozen`) while it scores `pred`, so the
    generator's backward pass leaves their `.grad` untouched; real audio is scored under
    `no_grad` (its features are targets only). The discriminator's own step is separate:
    `discriminator_loss(discriminator(target), discriminator(pred.detach()))`, run with the
    parameters trainable, so that its gradient does not reach the codec.

    Args:
        discriminator: the MS-STFT discriminator.
        pred: [B, 1, N] codec output, attached to the codec's graph.
        target: [B, 1, N] input audio.

    Returns:
        `{"adv/gen": hinge generator loss, "adv/feat": relative feature-matching L1}`.
    """
    with torch.no_grad():
        real_outputs = discriminator(target)
    with frozen(discriminator):
        fake_outputs = discriminator(pred)
    return {
        "adv/gen": generator_adversarial_loss(fake_outputs),
        "adv/feat": feature_matching_loss(real_outputs, fake_outputs),
    }
