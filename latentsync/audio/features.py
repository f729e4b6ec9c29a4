"""Whisper encoder features for a whole clip, as upstream's "transcribe" path computes them (no decoding).

Upstream takes the log-mel of the whole clip, cuts it into 30 s windows (3000 mel frames) zero-padded in
log-mel space, encodes each window separately and keeps ``floor(valid_frames / 2)`` rows of the 5 hidden
states per window. Here the windows are encoded several at a time.
"""

from __future__ import annotations

import logging

import torch

from ..models.whisper import WhisperEncoder
from .mel import HOP_LENGTH, check_waveform, log_mel_spectrogram

log = logging.getLogger(__name__)

# Shortest clip that yields at least one feature row (two mel frames).
MIN_FEATURE_SAMPLES = 2 * HOP_LENGTH


def _module_placement(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in module.parameters():
        return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def window_row_counts(num_mel_frames: int, window: int) -> list[int]:
    """Feature rows kept from each encoder window: half of the window's real (unpadded) mel frames."""
    starts = range(0, num_mel_frames, window)
    return [min(window, num_mel_frames - s) // 2 for s in starts]


def whisper_features(
    encoder: WhisperEncoder,
    wav16k: torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    batch_windows: int = 8,
) -> torch.Tensor:
    """Per-row whisper hidden states ``(N, n_layer + 1, D)`` float32 on the CPU, 50 rows per second of audio.

    ``device``/``dtype`` default to the encoder's own (float32 after :func:`load_whisper_encoder`); upstream
    runs the encoder in float16 on GPUs (pass ``dtype=torch.float16`` to reproduce that).
    ``batch_windows`` 30 s windows go through the encoder per call.
    """
    check_waveform(wav16k, "whisper_features", MIN_FEATURE_SAMPLES)
    if not bool(torch.isfinite(wav16k).all()):
        raise ValueError("The audio waveform contains NaN or infinite samples.")
    if batch_windows < 1:
        raise ValueError(f"batch_windows must be >= 1, got {batch_windows}.")
    own_device, own_dtype = _module_placement(encoder)
    device = torch.device(device) if device is not None else own_device
    dtype = dtype or own_dtype

    window = encoder.mel_frames
    with torch.no_grad():  # not inference_mode: callers may use the result in autograd-enabled code
        mel = log_mel_spectrogram(wav16k.to(device), encoder.dims.n_mels)
        total = mel.shape[1]
        keep = window_row_counts(total, window)
        num_windows = len(keep)
        # Zero-padding the whole spectrogram then folding it equals padding each window separately.
        mel = torch.nn.functional.pad(mel, (0, num_windows * window - total))
        windows = mel.unflatten(1, (num_windows, window)).transpose(0, 1)

        pieces = []
        for first in range(0, num_windows, batch_windows):
            last = min(first + batch_windows, num_windows)
            counts = keep[first:last]
            if not any(counts):
                continue
            states = encoder.forward_hidden_states(windows[first:last].to(dtype)).transpose(1, 2)
            rows = torch.cat([states[i, :n] for i, n in enumerate(counts) if n], dim=0)
            pieces.append(rows.to(device="cpu", dtype=torch.float32))
    features = torch.cat(pieces, dim=0)
    log.debug("whisper features: %d samples -> %d mel frames -> %s in %d windows", wav16k.numel(), total, tuple(features.shape), num_windows)
    return features
