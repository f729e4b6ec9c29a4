"""MFCC features exactly as upstream's SyncNet evaluation computes them (python_speech_features 0.6 ``mfcc``).

Defaults of that call: 16 kHz int16 samples (not scaled to [-1, 1]), pre-emphasis 0.97, 25 ms frames every
10 ms with no window, the last frame zero-padded, a 512-point power spectrum, 26 triangular mel filters on
integer FFT bins (0 Hz to Nyquist), log, orthonormal DCT-II, the first 13 coefficients, a sine lifter of 22,
and coefficient 0 replaced by the log frame energy. Computed in float64 on the CPU; upstream hands the
network the float32 cast of the result, ``(13, frames)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..configs import AUDIO_SAMPLE_RATE

SAMPLE_RATE = AUDIO_SAMPLE_RATE
FRAME_LEN = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
NFFT = 512
NUM_FILTERS = 26
NUM_CEPS = 13
PREEMPH = 0.97
LIFTER = 22
_EPS = float(np.finfo(float).eps)


def num_frames(num_samples: int) -> int:
    """MFCC rows of a clip: one frame for clips up to 25 ms, else 1 + ceil((T - 400) / 160)."""
    if num_samples <= FRAME_LEN:
        return 1
    return 1 + math.ceil((num_samples - FRAME_LEN) / FRAME_STEP)


@functools.lru_cache(maxsize=4)
def mel_filters(nfilt: int = NUM_FILTERS, nfft: int = NFFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular filters (nfilt, nfft//2+1) float64 on integer FFT bins, as python_speech_features builds them."""
    high_mel = 2595 * np.log10(1 + (sample_rate / 2) / 700.0)
    mels = np.linspace(2595 * np.log10(1 + 0 / 700.0), high_mel, nfilt + 2)
    bins = np.floor((nfft + 1) * (700 * (10 ** (mels / 2595.0) - 1)) / sample_rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rise = np.arange(int(lo), int(mid))
        fall = np.arange(int(mid), int(hi))
        bank[j, rise] = (rise - lo) / (mid - lo)
        bank[j, fall] = (hi - fall) / (hi - mid)
    return torch.from_numpy(bank)


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int, keep: int) -> torch.Tensor:
    """Orthonormal DCT-II as a (n, keep) matrix (scipy.fftpack.dct(type=2, norm='ortho') columns)."""
    k = np.arange(keep)[None, :]
    i = np.arange(n)[:, None]
    basis = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    basis[:, 0] = np.sqrt(1.0 / n)
    return torch.from_numpy(basis)


def mfcc(samples: torch.Tensor) -> torch.Tensor:
    """MFCC (frames, 13) float64 of 16 kHz samples on the int16 scale (values in -32768..32767)."""
    x = torch.as_tensor(samples).detach().to("cpu", torch.float64).flatten()
    if x.numel() == 0:
        raise ValueError("mfcc: the audio is empty.")
    emphasised = torch.cat([x[:1], x[1:] - PREEMPH * x[:-1]])
    count = num_frames(x.numel())
    padded = torch.nn.functional.pad(emphasised, (0, (count - 1) * FRAME_STEP + FRAME_LEN - x.numel()))
    frames = padded.unfold(0, FRAME_LEN, FRAME_STEP)
    power = torch.fft.rfft(frames, NFFT).abs().square() / NFFT
    energy = power.sum(1)
    energy = torch.where(energy == 0, torch.full_like(energy, _EPS), energy)
    feat = power @ mel_filters().T
    feat = torch.where(feat == 0, torch.full_like(feat, _EPS), feat)
    ceps = feat.log() @ _dct_matrix(NUM_FILTERS, NUM_CEPS)
    lift = 1 + (LIFTER / 2.0) * torch.sin(math.pi * torch.arange(NUM_CEPS, dtype=torch.float64) / LIFTER)
    ceps = ceps * lift
    ceps[:, 0] = energy.log()
    return ceps


def mfcc_from_waveform(wav16k: torch.Tensor) -> torch.Tensor:
    """MFCC (13, frames) float32, ready for SyncNet, of a float 16 kHz mono waveform in [-1, 1] (the int16 grid
    of upstream's PCM file: values are scaled by 32768, as ``wavfile.read`` returns them)."""
    wave = torch.as_tensor(wav16k).detach().to("cpu", torch.float64).flatten()
    ints = torch.round(wave * 32768.0).clamp_(-32768, 32767)
    return mfcc(ints).T.contiguous().to(torch.float32)
