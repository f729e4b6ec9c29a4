"""Pause detection: inserted silences found to the frame (within the padding), pure silence, pure speech."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from latentsync.audio.silence import silent_frames

RATE = 16000
# (cut point in the original demo1 clip, seconds of digital silence inserted there). The 0.2 s one is
# shorter than min_silence_s and must be ignored. Cut points are in the middle of loud speech.
INSERTS = [(0.70, 1.0), (2.30, 0.5), (5.10, 0.2)]


def _demo1(media: Path) -> np.ndarray:
    with wave.open(str(media / "demo1_audio.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def _block_dbfs(x: np.ndarray, start_s: float, stop_s: float) -> np.ndarray:
    seg = x[int(round(start_s * RATE)):int(round(stop_s * RATE))]
    blocks = seg[: len(seg) // 160 * 160].reshape(-1, 160)
    return 10 * np.log10((blocks**2).mean(axis=1) + 1e-12)


@pytest.fixture(scope="module")
def with_gaps(media: Path) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """demo1 with the INSERTS spliced in; returns the audio and the inserted intervals on the new timeline."""
    original = _demo1(media)
    pieces, gaps, prev, shift = [], [], 0, 0.0
    for cut_s, length_s in INSERTS:
        # Precondition (independent of the detector): loud speech right before and after the cut.
        assert (_block_dbfs(original, cut_s - 0.05, cut_s + 0.05) > -30).all(), f"cut at {cut_s}s is not in speech"
        cut = int(round(cut_s * RATE))
        pieces += [original[prev:cut], np.zeros(int(round(length_s * RATE)), dtype=np.float32)]
        gaps.append((cut_s + shift, cut_s + shift + length_s))
        shift += length_s
        prev = cut
    pieces.append(original[prev:])
    return torch.from_numpy(np.concatenate(pieces)), gaps


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97])
def test_inserted_silences_are_found_exactly(with_gaps, fps):
    audio, gaps = with_gaps
    pad, min_silence = 0.1, 0.3
    frames = int(audio.numel() / RATE * fps)
    silent = silent_frames(audio, frames, fps, pad_s=pad, min_silence_s=min_silence)
    assert silent.dtype == torch.bool and silent.shape == (frames,)
    for start, stop in gaps:
        # Every frame overlapping [start - pad, stop + pad] is decided by this gap alone.
        first = math.floor((start - pad) * fps)
        last = math.ceil((stop + pad) * fps)
        ids = np.arange(first, last)
        if stop - start >= min_silence:
            lo, hi = start + pad, stop - pad
            expected = (ids / fps >= lo - 1e-9) & ((ids + 1) / fps <= hi + 1e-9)
            assert expected.sum() >= int((hi - lo) * fps) - 1
        else:
            expected = np.zeros_like(ids, dtype=bool)
        assert silent[first:last].tolist() == expected.tolist(), (start, stop)


def test_pure_silence_is_all_silent():
    assert bool(silent_frames(torch.zeros(3 * RATE), 75, 25).all())
    noise = torch.randn(3 * RATE, generator=torch.Generator().manual_seed(0)) * 1e-4  # -80 dBFS hiss
    assert bool(silent_frames(noise, 90, 30).all())


def test_pure_speech_is_never_silent():
    t = torch.arange(3 * RATE, dtype=torch.float64) / RATE
    voiced = sum(torch.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 12))
    syllables = 0.55 + 0.45 * torch.sin(2 * math.pi * 4 * t)  # 4 Hz syllable rhythm, never fully closed
    speech = (0.2 * voiced * syllables).float()
    assert not bool(silent_frames(speech, 77, 25).any())  # incl. upstream's 2 frames past the end (within pad)
    assert bool(silent_frames(speech, 90, 25)[80:].all())  # well past the end of the audio


def test_quiet_recording_is_still_speech_and_threshold_is_relative(media):
    speech = torch.from_numpy(_demo1(media)[: 3 * RATE])
    loud = silent_frames(speech, 75, 25)
    quiet = silent_frames(speech * 0.05, 75, 25)  # -26 dB, still above the absolute floor
    assert torch.equal(loud, quiet) and not bool(loud[20:60].all())


def test_bad_arguments():
    with pytest.raises(ValueError):
        silent_frames(torch.zeros(2, 100), 4, 25)
    with pytest.raises(ValueError):
        silent_frames(torch.zeros(100), 4, 0)
    with pytest.raises(ValueError):
        silent_frames(torch.tensor([0.0, float("nan")]), 4, 25)
    assert silent_frames(torch.zeros(100), 0, 25).shape == (0,)
