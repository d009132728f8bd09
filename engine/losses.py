"""Reconstruction losses for the codec: multi-scale mel, multi-scale STFT and waveform L1.

Every loss is a pure function of (pred, target) returning a scalar tensor; the terms are named
(`recon/mel`, `recon/stft`, `recon/l1`) and combined with a weight dict from the config by
`weighted_sum`, as DAC does. Evaluation metrics (`mel_distance`, `si_sdr`) live here too.

Conventions shared by all spectral terms:
- STFTs use a Hann window, hop = window / 4, centred frames, and are normalised by the window's
  L2 norm, so that magnitudes (and hence the log floor) mean the same at every window size.
- Log compression is `log(x + log_floor)`: smooth, finite for silence, and it still passes a
  gradient where the prediction is quiet (a clamp would cut it off there).
- Per-scale losses are *averaged* over the scales, so a loss weight does not depend on how many
  scales the config lists.
"""

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructionConfig:
    """Settings of the reconstruction losses (weights live with the trainer's weight dict)."""

    sample_rate: int = 32000
    mel_windows: tuple[int, ...] = (512, 1024, 2048)  # hop = window // 4
    n_mels: int = 64
    mel_fmin: float = 0.0
    mel_fmax: float | None = None  # None: Nyquist
    mel_l2_weight: float = 0.0  # > 0 adds this times the log-mel MSE to the log-mel L1
    log_floor: float = 1e-5
    stft_windows: tuple[int, ...] = (256, 512, 1024, 2048)  # hop = window // 4


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    if pred.dim() != 3:
        raise ValueError(f"expected audio [B, C, N], got shape {tuple(pred.shape)}")


class MelSpectrograms(nn.Module):
    """Log-mel spectrograms at several window sizes, transforms built once and kept as submodules.

    The Hann windows and mel filterbanks are buffers of the torchaudio transforms, so `.to(device)`
    moves them with the module and they are never rebuilt per call.
    """

    def __init__(self, config: ReconstructionConfig) -> None:
        super().__init__()
        self.windows = tuple(config.mel_windows)
        self.log_floor = config.log_floor
        self.transforms = nn.ModuleDict(
            {
                str(window): torchaudio.transforms.MelSpectrogram(
                    sample_rate=config.sample_rate,
                    n_fft=window,
                    hop_length=window // 4,
                    f_min=config.mel_fmin,
                    f_max=config.mel_fmax,
                    n_mels=config.n_mels,
                    power=1.0,  # magnitude, not power: log-mel differences stay in a sane range
                    normalized=True,
                )
                for window in self.windows
            }
        )

    def transform(self, window: int) -> torchaudio.transforms.MelSpectrogram:
        """The cached mel transform for `window` (KeyError if the config did not list it)."""
        key = str(window)
        if key not in self.transforms:
            raise KeyError(f"no mel transform for window {window}; configured: {self.windows}")
        return self.transforms[key]

    def forward(self, audio: Tensor) -> list[Tensor]:
        """Log-mel spectrograms of `audio`, one per window.

        Args:
            audio: [B, C, N] waveform.

        Returns:
            One [B, C, n_mels, frames] tensor of `log(mel + log_floor)` per window, in config order.
        """
        return [
            torch.log(self.transform(w)(audio) + self.log_floor)  # [B, C, n_mels, N // (w/4) + 1]
            for w in self.windows
        ]


def mel_loss(pred: Tensor, target: Tensor, mels: MelSpectrograms, l2_weight: float = 0.0) -> Tensor:
    """Multi-scale log-mel loss: mean |log-mel difference| per scale, averaged over scales.

    Args:
        pred: [B, C, N] reconstruction.
        target: [B, C, N] reference.
        mels: the cached transforms (their window list and log floor are used).
        l2_weight: if > 0, adds `l2_weight * mean(difference²)` per scale.

    Returns:
        Scalar loss.
    """
    _check_pair(pred, target)
    per_scale = []
    for pred_mel, target_mel in zip(mels(pred), mels(target), strict=True):
        diff = pred_mel - target_mel  # [B, C, n_mels, frames]
        loss = diff.abs().mean()
        if l2_weight > 0:
            loss = loss + l2_weight * diff.pow(2).mean()
        per_scale.append(loss)
    return torch.stack(per_scale).mean()


def _magnitude(audio: Tensor, window: int) -> Tensor:
    """Window-normalised STFT magnitude [B*C, window // 2 + 1, frames] of [B, C, N] audio."""
    hann = torch.hann_window(window, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(
        audio.reshape(-1, audio.shape[-1]),  # [B*C, N]
        n_fft=window,
        hop_length=window // 4,
        window=hann,
        center=True,
        normalized=True,
        return_complex=True,
    )  # [B*C, window // 2 + 1, frames]
    return spec.abs()


def stft_loss(
    pred: Tensor, target: Tensor, windows: Sequence[int], log_floor: float = 1e-5
) -> Tensor:
    """Multi-resolution STFT loss, DAC-style: log-magnitude L1 + magnitude L1, mean over scales.

    Not spectral convergence: its `||Mp - Mt|| / ||Mt||` explodes on a silent target segment
    (a clamped denominator turns a quiet error into ~1e5), and real data has digital silence.
    The log term weighs every bin alike down to `log_floor`; the linear term weighs loud bins.

    Args:
        pred: [B, C, N] reconstruction.
        target: [B, C, N] reference.
        windows: STFT window sizes; hop = window // 4.
        log_floor: added to magnitudes before the log.

    Returns:
        Scalar loss.
    """
    _check_pair(pred, target)
    per_scale = []
    for window in windows:
        pred_mag = _magnitude(pred, window)  # [B*C, F, T]
        target_mag = _magnitude(target, window)  # [B*C, F, T]
        log_mag = (torch.log(pred_mag + log_floor) - torch.log(target_mag + log_floor)).abs().mean()
        per_scale.append(log_mag + (pred_mag - target_mag).abs().mean())
    return torch.stack(per_scale).mean()


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute waveform difference.

    Args:
        pred: [B, C, N] reconstruction.
        target: [B, C, N] reference.

    Returns:
        Scalar loss.
    """
    _check_pair(pred, target)
    return F.l1_loss(pred, target)


def reconstruction_terms(
    pred: Tensor,
    target: Tensor,
    mels: MelSpectrograms,
    config: ReconstructionConfig,
    names: Collection[str] | None = None,
) -> dict[str, Tensor]:
    """Reconstruction terms by name, ready for `weighted_sum`.

    Args:
        pred: [B, C, N] decoder output (crop it to the target's length first).
        target: [B, C, N] input audio.
        mels: transforms built from the same config.
        config: windows and log floor of the STFT term, L2 weight of the mel term.
        names: compute only these terms (training skips the unweighted ones: an unused
            multi-scale STFT costs a step's worth of FFTs); None computes all.

    Returns:
        `{"recon/mel": ..., "recon/stft": ..., "recon/l1": ...}` (or the subset), scalar tensors.
    """
    terms = {
        "recon/mel": lambda: mel_loss(pred, target, mels, l2_weight=config.mel_l2_weight),
        "recon/stft": lambda: stft_loss(pred, target, config.stft_windows,
                                        log_floor=config.log_floor),
        "recon/l1": lambda: l1_loss(pred, target),
    }
    return {name: compute() for name, compute in terms.items() if names is None or name in names}


def weighted_sum(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Total loss `sum(weights[k] * terms[k])` over the keys of `weights`.

    A weight whose term is absent is a configuration mistake and raises KeyError. A term without
    a weight is left out of the total: it is there to be logged only (e.g. `recon/stft` when the
    recipe trains on mel + L1). A weight of 0 keeps the term in the sum (a NaN still shows).

    Args:
        terms: named scalar loss terms.
        weights: name -> weight, e.g. `{"recon/mel": 2.0, "recon/l1": 0.1, "vq/commit": 1.0}`.

    Returns:
        Scalar total.
    """
    if not weights:
        raise ValueError("no loss weights given: the total would be empty")
    missing = sorted(set(weights) - set(terms))
    if missing:
        raise KeyError(
            f"loss weights given for absent terms {missing}; terms present: {sorted(terms)}"
        )
    unweighted = sorted(set(terms) - set(weights))
    if unweighted:
        logger.debug("terms logged only (no weight): %s", unweighted)
    return torch.stack([weight * terms[name] for name, weight in weights.items()]).sum()


@torch.no_grad()
def mel_distance(pred: Tensor, target: Tensor, mels: MelSpectrograms) -> float:
    """Multi-scale log-mel L1 distance for evaluation (the `recon/mel` term without L2, no grad).

    Args:
        pred: [B, C, N] reconstruction.
        target: [B, C, N] reference.
        mels: the cached transforms.

    Returns:
        The distance as a Python float (lower is better; 0 for identical audio).
    """
    return float(mel_loss(pred, target, mels))


def si_sdr(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB, per batch item (Le Roux et al., 2019).

    Both signals are made zero-mean; the target is scaled by the least-squares gain
    `<pred, target> / ||target||²` and the rest of `pred` counts as distortion. Computed in
    float64; `eps` keeps silence finite.

    Args:
        pred: [B, C, N] estimate (channels are flattened with time).
        target: [B, C, N] reference.
        eps: added to the energies and to the gain's denominator.

    Returns:
        [B] SI-SDR in dB, in pred's dtype (higher is better).
    """
    _check_pair(pred, target)
    p = pred.reshape(pred.shape[0], -1).double()  # [B, C*N]
    t = target.reshape(target.shape[0], -1).double()  # [B, C*N]
    p = p - p.mean(dim=1, keepdim=True)
    t = t - t.mean(dim=1, keepdim=True)
    gain = (p * t).sum(dim=1, keepdim=True) / (t.pow(2).sum(dim=1, keepdim=True) + eps)  # [B, 1]
    signal = gain * t  # [B, C*N]
    distortion = p - signal  # [B, C*N]
    ratio = (signal.pow(2).sum(dim=1) + eps) / (distortion.pow(2).sum(dim=1) + eps)  # [B]
    return (10 * torch.log10(ratio)).to(pred.dtype)
