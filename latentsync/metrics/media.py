"""Sync scores of media files: decode a video (and its own or another audio track) and score it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from .score import Progress, SyncModels, SyncOptions, SyncScore, score_clip


@dataclass
class Clip:
    """A decoded clip: frames (F, H, W, 3) uint8 RGB, their frame rate, and 16 kHz mono audio."""

    frames: torch.Tensor
    fps: float
    wav16k: torch.Tensor


def read_clip(video: str | os.PathLike, audio: Optional[str | os.PathLike] = None) -> Clip:
    """Decode ``video`` (whole) and ``audio`` (default: the video's own audio track) as the scorer wants them."""
    from ..audio.waveform import load_16k_mono
    from ..io.decode import read_video

    decoded = read_video(video)
    wav = load_16k_mono(audio if audio is not None else video)
    return Clip(decoded.frames, float(decoded.info.fps), wav)


def score_file(video: str | os.PathLike, models: SyncModels, audio: Optional[str | os.PathLike] = None,
               options: Optional[SyncOptions] = None, *, progress: Optional[Progress] = None) -> SyncScore:
    """Score a video file against its own audio (or ``audio``); not-scorable clips come back with the reason."""
    clip = read_clip(video, audio)
    return score_clip(clip.frames, clip.wav16k, clip.fps, models, options, progress=progress)
