"""Per-video-frame windows of whisper feature rows (50 rows per second), for any frame rate.

Upstream (``audio2feature.py``) gives video frame ``i`` the rows ``c - 4 ... c + 5`` around
``c = int(i * 50 / fps)`` (clamped to the clip), and emits chunks until ``int(i * (50.0 / fps))`` passes the
last row. The two float expressions round differently for some frame rates, so each is kept where upstream
uses it; both are evaluated in float64 exactly as Python does.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..configs import UPSTREAM_FPS

ROWS_PER_SECOND = 50
DEFAULT_FEAT_LENGTH = (2, 2)
# Slack (in feature rows, i.e. 20 ns) absorbing float error of timestamps t = i / fps before flooring.
TIME_TOLERANCE_ROWS = 1e-6


def _checked_fps(fps: float) -> float:
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}.")
    return value


def _checked_rows(num_rows: int, minimum: int) -> int:
    if isinstance(num_rows, bool) or int(num_rows) != num_rows or num_rows < minimum:
        raise ValueError(f"num_rows (whisper feature rows) must be an integer >= {minimum}, got {num_rows!r}.")
    return int(num_rows)


def _row_offsets(feat_length: Sequence[int]) -> torch.Tensor:
    before, after = (int(v) for v in feat_length)
    if before < 0 or after < 0:
        raise ValueError(f"feat_length must be two non-negative ints, got {tuple(feat_length)}.")
    return torch.arange(-2 * before, 2 * (after + 1), dtype=torch.long)


def window_size(feat_length: Sequence[int] = DEFAULT_FEAT_LENGTH) -> int:
    """Feature rows per frame window (10 for upstream's ``audio_feat_length [2, 2]``)."""
    return int(_row_offsets(feat_length).numel())


def upstream_frame_count(num_rows: int, fps: float = UPSTREAM_FPS) -> int:
    """Number of chunks (= output frames) upstream's ``feature2chunks`` yields for ``num_rows`` feature rows.

    Upstream appends chunk ``i`` and stops after the first ``i`` with ``int(i * (50.0 / fps)) > num_rows``;
    at 25 fps that is ``num_rows // 2 + 2``, two frames more than the audio covers.
    """
    rows = _checked_rows(num_rows, 0)
    step = ROWS_PER_SECOND / _checked_fps(fps)
    i = max(0, math.floor((rows + 1) / step) - 2)  # at or before the stopping frame
    while int(i * step) <= rows:
        i += 1
    return i + 1


def _windows_from_centres(centres: torch.Tensor, num_rows: int, feat_length: Sequence[int]) -> torch.Tensor:
    indices = centres.to(torch.long)[:, None] + _row_offsets(feat_length)[None, :]
    return indices.clamp_(0, num_rows - 1)


def frame_window_indices(
    num_rows: int,
    num_frames: int,
    fps: float = UPSTREAM_FPS,
    *,
    feat_length: Sequence[int] = DEFAULT_FEAT_LENGTH,
    start_frame: int = 0,
) -> torch.Tensor:
    """Feature-row indices ``(F, 10)`` int64 for video frames ``start_frame ... start_frame + F - 1``.

    Frame ``i`` is centred on row ``int(i * 50 / fps)``; indices are clamped to ``[0, num_rows - 1]``, so any
    frame count works (frames past the audio repeat its last row). ``start_frame`` lets streaming callers ask
    for a slice of the same table.
    """
    rows = _checked_rows(num_rows, 1)
    fps = _checked_fps(fps)
    if int(num_frames) != num_frames or num_frames < 0:
        raise ValueError(f"num_frames must be an integer >= 0, got {num_frames!r}.")
    if int(start_frame) != start_frame or start_frame < 0:
        raise ValueError(f"start_frame must be an integer >= 0, got {start_frame!r}.")
    frames = torch.arange(int(start_frame), int(start_frame) + int(num_frames), dtype=torch.float64)
    centres = torch.trunc(frames * ROWS_PER_SECOND / fps)
    return _windows_from_centres(centres, rows, feat_length)


def frame_window_indices_at(
    num_rows: int,
    times_s: torch.Tensor,
    *,
    feat_length: Sequence[int] = DEFAULT_FEAT_LENGTH,
) -> torch.Tensor:
    """Feature-row indices ``(F, 10)`` for frames shown at ``times_s`` seconds (variable frame rate).

    The centre is ``floor(t * 50)`` with a 1e-6-row tolerance, so ``t = i / fps`` (in float64) gives exactly the
    centres of :func:`frame_window_indices` for common rates (integer, 29.97, 30000/1001, 59.94, 23.976 ...).
    Exception: where upstream's own float expression drops an exact integer by one ulp (fps = 24000/1001:
    frame 480 -> 1000.9999999999999), this gives the exact centre (1001) instead. Times are relative to the
    start of the audio; pass float64 for long clips (float32 timestamps are too coarse beyond a few minutes).
    """
    rows = _checked_rows(num_rows, 1)
    times = torch.as_tensor(times_s).detach().to(device="cpu", dtype=torch.float64)
    if times.ndim != 1:
        raise ValueError(f"times_s must be a 1-D tensor of frame times in seconds, got shape {tuple(times.shape)}.")
    if not bool(torch.isfinite(times).all()):
        raise ValueError("times_s contains NaN or infinite frame times.")
    centres = torch.floor(times * ROWS_PER_SECOND + TIME_TOLERANCE_ROWS)
    return _windows_from_centres(centres, rows, feat_length)


def frame_windows(features: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Gather per-frame audio windows ``(F, W * (L + 1), D)`` from features ``(N, L + 1, D)``.

    Tokens are ordered time-major then layer: token ``t * (L + 1) + l`` is row offset ``t`` of layer ``l``.
    The result lives on ``features``' device and dtype.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be (N, L+1, D) whisper hidden states, got shape {tuple(features.shape)}.")
    if indices.ndim != 2:
        raise ValueError(f"indices must be a (F, W) table of feature rows, got shape {tuple(indices.shape)}.")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= features.shape[0]):
        raise ValueError(
            f"indices reach rows {int(indices.min())}..{int(indices.max())} but features have {features.shape[0]} rows."
        )
    gathered = features[indices.to(device=features.device, dtype=torch.long)]
    return gathered.flatten(1, 2)
