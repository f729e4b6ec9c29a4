"""Hard cuts as upstream's SyncNet pipeline finds them: PySceneDetect 0.6.1's ``ContentDetector`` defaults.

Frames are downscaled by ``width // 256`` (OpenCV bilinear, PySceneDetect's automatic factor), converted to
OpenCV's 8-bit HSV; a frame's score is the mean of its mean absolute H, S and V differences to the previous
frame; a cut starts a new scene at a frame scoring >= 27 once the current scene has 15 frames. Upstream then
takes the whole video as one scene when nothing was cut and otherwise ends the last scene one frame early
(the legacy VideoManager's position), which :func:`scene_ranges` keeps.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..face.resize import linear_u8

THRESHOLD = 27.0
MIN_SCENE_LEN = 15
MIN_WIDTH = 256  # PySceneDetect's target width for the automatic downscale factor
_HSV_SHIFT = 12


@functools.lru_cache(maxsize=1)
def _hsv_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's saturation and hue divisor tables for 8-bit HSV with H in 0..179."""
    i = np.arange(256, dtype=np.float64)
    with np.errstate(divide="ignore"):
        sdiv = np.where(i > 0, np.rint((255 << _HSV_SHIFT) / i), 0)
        hdiv = np.where(i > 0, np.rint((180 << _HSV_SHIFT) / (6.0 * i)), 0)
    return torch.from_numpy(sdiv.astype(np.int64)), torch.from_numpy(hdiv.astype(np.int64))


def rgb_to_hsv_u8(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (..., 3) -> uint8 HSV (..., 3) exactly as ``cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)``."""
    sdiv, hdiv = (t.to(rgb.device) for t in _hsv_tables())
    r, g, b = (rgb[..., i].to(torch.int64) for i in range(3))
    v = torch.maximum(torch.maximum(b, g), r)
    diff = v - torch.minimum(torch.minimum(b, g), r)
    s = (diff * sdiv[v] + (1 << (_HSV_SHIFT - 1))) >> _HSV_SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv[diff] + (1 << (_HSV_SHIFT - 1))) >> _HSV_SHIFT
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], -1).clamp_(0, 255).to(torch.uint8)


def downscale_factor(width: int) -> int:
    """PySceneDetect's automatic factor: 1 below 256 px, else ``width // 256``."""
    return 1 if width < MIN_WIDTH else width // MIN_WIDTH


def detection_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (F, H, W, 3) at the size the detector sees them (``round(side / factor)``, bilinear)."""
    factor = downscale_factor(int(frames.shape[2]))
    if factor <= 1:
        return frames
    size = (round(frames.shape[1] / factor), round(frames.shape[2] / factor))
    return linear_u8(frames, size)


def content_scores(frames: torch.Tensor, previous_hsv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame scores (F,) float64 of uint8 RGB frames and the last frame's HSV (to continue a stream).

    The first frame of a video scores 0; pass ``previous_hsv`` to score a batch that continues one."""
    hsv = rgb_to_hsv_u8(detection_frames(frames)).to(torch.int32)
    before = hsv[:-1] if previous_hsv is None else torch.cat([previous_hsv[None].to(hsv), hsv[:-1]])
    deltas = (hsv[-before.shape[0]:] - before).abs().sum(dim=(1, 2), dtype=torch.int64).to(torch.float64)
    deltas = deltas / float(hsv.shape[1] * hsv.shape[2])  # (n, 3): mean |dH|, |dS|, |dV|
    scores = (deltas[:, 0] + deltas[:, 1] + deltas[:, 2] + 0.0) / 3.0
    if previous_hsv is None:
        scores = torch.cat([torch.zeros(1, dtype=torch.float64, device=scores.device), scores])
    return scores.cpu(), hsv[-1]


def detect_cuts(scores: torch.Tensor, threshold: float = THRESHOLD, min_scene_len: int = MIN_SCENE_LEN) -> list[int]:
    """Frames that start a new scene (a score >= threshold at least ``min_scene_len`` frames after the last cut,
    counting from frame 0)."""
    cuts, last = [], 0
    for frame in torch.nonzero(torch.as_tensor(scores) >= threshold).flatten().tolist():
        if frame - last >= min_scene_len:
            cuts.append(frame)
            last = frame
    return cuts


def scene_ranges(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """Upstream's scenes ``[start, end)``: the whole video without cuts, else cut to cut with the last scene
    ending at ``num_frames - 1`` (PySceneDetect's legacy VideoManager reports the last frame's position)."""
    if not cuts:
        return [(0, num_frames)]
    bounds = [0, *cuts, num_frames - 1]
    return list(zip(bounds[:-1], bounds[1:]))
