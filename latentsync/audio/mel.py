"""Whisper's log-mel spectrogram: 25 ms Hann STFT every 10 ms, Slaney mel bands, whole-clip dynamic range.

The filterbank is computed here (same definition as ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``,
which openai-whisper ships as ``mel_filters.npz``) so no data file is needed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..configs import AUDIO_SAMPLE_RATE

SAMPLE_RATE = AUDIO_SAMPLE_RATE
N_FFT = 400
HOP_LENGTH = 160

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_MELS_PER_E = 27.0 / math.log(6.4)

# Minimum clip length for a log-mel with at least one frame (reflect padding needs more than n_fft/2 samples).
MIN_SAMPLES = N_FFT // 2 + 1


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    above = np.maximum(hz, _BREAK_HZ)
    return np.where(hz < _BREAK_HZ, hz / _LINEAR_HZ_PER_MEL, _BREAK_MEL + np.log(above / _BREAK_HZ) * _LOG_MELS_PER_E)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    above = np.maximum(mel, _BREAK_MEL)
    return np.where(mel < _BREAK_MEL, mel * _LINEAR_HZ_PER_MEL, _BREAK_HZ * np.exp((above - _BREAK_MEL) / _LOG_MELS_PER_E))


def mel_filterbank(
    n_mels: int = 80,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    *,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> torch.Tensor:
    """Slaney-normalised triangular mel filters ``(n_mels, n_fft // 2 + 1)`` float32 (librosa's default mel)."""
    if n_mels <= 0 or n_fft <= 0 or sample_rate <= 0:
        raise ValueError(f"mel_filterbank needs positive sizes, got n_mels={n_mels}, n_fft={n_fft}, sr={sample_rate}")
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    bin_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * (sample_rate / n_fft)
    edges_mel = np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), n_mels + 2)
    edges = _slaney_mel_to_hz(edges_mel)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - left) / (centre - left)
    falling = (right - bin_hz[None, :]) / (right - centre)
    # librosa stores the triangles in float32 before scaling them by the (float64) area normalisation.
    triangles = np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)
    area_norm = 2.0 / (edges[2:] - edges[:-2])
    return torch.from_numpy((triangles * area_norm[:, None]).astype(np.float32))


def num_mel_frames(num_samples: int) -> int:
    """Mel frames whisper produces for a clip (the STFT's last frame is dropped): ``num_samples // 160``."""
    return num_samples // HOP_LENGTH



def check_waveform(wav16k: torch.Tensor, caller: str, min_samples: int) -> None:
    """Reject anything but a 1-D 16 kHz waveform of at least ``min_samples``, naming ``caller`` and the fix."""
    if not isinstance(wav16k, torch.Tensor) or wav16k.ndim != 1:
        shape = tuple(wav16k.shape) if isinstance(wav16k, torch.Tensor) else type(wav16k).__name__
        raise ValueError(f"{caller} expects a 1-D 16 kHz mono waveform tensor (T,), got {shape}; use to_16k_mono first.")
    if wav16k.numel() < min_samples:
        raise ValueError(
            f"Audio is too short for {caller}: {wav16k.numel()} samples at 16 kHz; "
            f"at least {min_samples} samples ({min_samples / SAMPLE_RATE * 1000:.1f} ms) are needed."
        )

def log_mel_spectrogram(wav16k: torch.Tensor, n_mels: int = 80, *, filters: torch.Tensor | None = None) -> torch.Tensor:
    """Whisper log-mel ``(n_mels, T // 160)`` float32 of a 16 kHz mono clip ``(T,)``, on the clip's device.

    The dynamic-range floor (max - 8, in log10 units) uses the maximum of the WHOLE clip, as upstream does
    before it cuts the spectrogram into 30 s windows.
    """
    check_waveform(wav16k, "log_mel_spectrogram", MIN_SAMPLES)
    audio = wav16k.to(torch.float32)
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=audio.device)
    spectrum = torch.stft(
        audio, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spectrum[:, :-1].abs().square()
    if filters is None:
        filters = mel_filterbank(n_mels)
    mel = filters.to(device=audio.device, dtype=torch.float32) @ power
    log_mel = mel.clamp_min(1e-10).log10()
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0
