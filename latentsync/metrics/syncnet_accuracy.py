"""StableSyncNet inputs and the accuracy of ``eval/eval_syncnet_acc.py``.

* Audio: Wav2Lip's mel spectrogram (``latentsync/utils/audio.py`` with ``configs/audio.yaml``): pre-emphasis
  0.97, 800-point Hann STFT every 200 samples (centred, zero padded), 80 Slaney mel bands 55-7600 Hz, dB with
  a -100 dB floor minus 20 dB, scaled to [-4, 4]; float64. A sample's window starts at mel row
  ``int(80 * frame / fps)`` and is ``ceil(frames / 5 * 16)`` rows long (52 for 16 frames).
* Frames: resized to the config's resolution (bicubic, antialiased, rounded back to uint8 as torchvision does
  for uint8 tensors), scaled to [-1, 1], frames stacked on the channel axis, optionally the lower half only.
* Accuracy: a pair is called "in sync" when the cosine similarity of the two embeddings exceeds 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..audio.mel import mel_filterbank
from ..configs import AUDIO_SAMPLE_RATE
from ..face.resize import bicubic_antialias
from .stable_syncnet import StableSyncNet

SAMPLE_RATE = AUDIO_SAMPLE_RATE
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
MEL_ROWS_PER_SECOND = 80.0
THRESHOLD = 0.5


def wav2lip_mel(wav16k: torch.Tensor) -> torch.Tensor:
    """(80, 1 + T // 200) float64 mel spectrogram of a 16 kHz mono float waveform (upstream's ``melspectrogram``)."""
    x = torch.as_tensor(wav16k).detach().to("cpu", torch.float64).flatten()
    if x.numel() == 0:
        raise ValueError("wav2lip_mel: the audio is empty.")
    y = torch.cat([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    spec = torch.stft(y, N_FFT, HOP, N_FFT, window=window, center=True, pad_mode="constant", return_complex=True)
    mel = mel_filterbank(N_MELS, SAMPLE_RATE, N_FFT, fmin=FMIN, fmax=FMAX).to(torch.float64) @ spec.abs()
    floor = math.exp(MIN_LEVEL_DB / 20 * math.log(10))
    db = 20 * torch.log10(torch.clamp(mel, min=floor)) - REF_LEVEL_DB
    return torch.clamp(2 * MAX_ABS * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS, -MAX_ABS, MAX_ABS)


def mel_window_length(num_frames: int) -> int:
    """Mel rows per sample: ``ceil(num_frames / 5 * 16)``."""
    return math.ceil(num_frames / 5 * 16)


def mel_window(mel: torch.Tensor, start_frame: int, num_frames: int = 16, fps: float = 25.0) -> torch.Tensor:
    """(1, 80, L) window of the mel spectrogram for frames ``start_frame ..`` (upstream's ``crop_audio_window``)."""
    start = int(MEL_ROWS_PER_SECOND * (start_frame / float(fps)))
    length = mel_window_length(num_frames)
    window = mel[:, start:start + length]
    if window.shape[1] != length:
        raise ValueError(f"mel_window: frames from {start_frame} need mel rows {start}..{start + length}, "
                         f"the audio has {mel.shape[1]}; pick an earlier start.")
    return window[None]


def prepare_frames(frames: torch.Tensor, resolution: int, lower_half: bool = True) -> torch.Tensor:
    """uint8 RGB samples (B, F, H, W, 3) -> float32 (B, 3*F, h, R) in [-1, 1] (the lower half when asked)."""
    if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"prepare_frames expects uint8 (batch, frames, H, W, 3), got {frames.dtype} {tuple(frames.shape)}.")
    b, f = frames.shape[:2]
    x = frames.permute(0, 1, 4, 2, 3).reshape(b * f, 3, *frames.shape[2:4])
    if tuple(x.shape[-2:]) != (resolution, resolution):
        x = bicubic_antialias(x.float(), (resolution, resolution)).clamp_(0, 255).round_()
    x = (x.float() / 255.0 - 0.5) / 0.5
    x = x.reshape(b, f * 3, resolution, resolution)
    return x[:, :, resolution // 2:, :] if lower_half else x


@dataclass
class AccuracyResult:
    """Similarities, predictions and the share of correct predictions."""

    similarities: torch.Tensor  # (N,) cosine similarity of each pair
    predictions: torch.Tensor  # (N,) bool: called in sync
    accuracy: float


@torch.no_grad()
def embed(model: StableSyncNet, frames: torch.Tensor, mels: torch.Tensor, *, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Vision and audio embeddings (N, D) float32 CPU of prepared frames (N, C, h, w) and mel windows (N, 1, 80, L)."""
    param = next(model.parameters())
    vis, aud = [], []
    for start in range(0, frames.shape[0], batch):
        v, a = model(frames[start:start + batch].to(param.device, param.dtype),
                     mels[start:start + batch].to(param.device, param.dtype))
        vis.append(v.float().cpu())
        aud.append(a.float().cpu())
    return torch.cat(vis), torch.cat(aud)


def accuracy(model: StableSyncNet, frames: torch.Tensor, mels: torch.Tensor, labels: torch.Tensor, *,
             threshold: float = THRESHOLD, batch: int = 16) -> AccuracyResult:
    """Share of pairs whose call (similarity > threshold) matches the label (1 = in sync, 0 = not)."""
    if not (frames.shape[0] == mels.shape[0] == labels.shape[0]):
        raise ValueError(f"accuracy: {frames.shape[0]} frame samples, {mels.shape[0]} mel windows and "
                         f"{labels.shape[0]} labels; give one of each per pair.")
    vision, audio = embed(model, frames, mels, batch=batch)
    sims = F.cosine_similarity(vision, audio)
    preds = sims > threshold
    correct = (preds == labels.to(torch.bool).flatten()).sum().item()
    return AccuracyResult(sims, preds, correct / max(1, labels.shape[0]))
