"""The 224 x 224 face crops SyncNet scores, as upstream's ``SyncNetDetector.crop_video`` cuts them.

Per track: box side (half the larger side), centre x and y are median-filtered over 13 frames (SciPy's
``medfilt``: zero padding at the ends); each frame is padded by ``int(1.8 * s)`` pixels of value 110, the region
from ``s`` above to ``1.8 * s`` below the centre and ``1.4 * s`` either side is cut (NumPy slicing rules) and
resized to 224 x 224 with OpenCV's bilinear filter. All crops of a batch are cut and resized in one gather.
"""

from __future__ import annotations

import numpy as np
import torch

from ..face.resize import linear_combine, linear_taps
from .tracks import FaceTrack

CROP_SIZE = 224
CROP_SCALE = 0.4
SMOOTH_KERNEL = 13
PAD_VALUE = 110


def medfilt(values: np.ndarray, kernel: int = SMOOTH_KERNEL) -> np.ndarray:
    """``scipy.signal.medfilt`` of a 1-D float64 array (odd kernel, zero padding at both ends)."""
    half = kernel // 2
    padded = np.concatenate([np.zeros(half), np.asarray(values, dtype=np.float64), np.zeros(half)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel)
    return np.sort(windows, axis=1)[:, half]


def crop_geometry(track: FaceTrack) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed half side ``s``, centre ``x`` and centre ``y`` per frame of a track."""
    boxes = track.boxes
    side = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    return medfilt(side), medfilt((boxes[:, 0] + boxes[:, 2]) / 2), medfilt((boxes[:, 1] + boxes[:, 3]) / 2)


def crop_regions(side: np.ndarray, cx: np.ndarray, cy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Per frame ``(top, bottom, left, right)`` of the crop in frame pixels (may reach outside the frame,
    which is filled with 110): upstream's padded-frame slice, mapped back to the unpadded frame."""
    height, width = frame_hw
    cs = CROP_SCALE
    regions = []
    for bs, x, y in zip(side.tolist(), cx.tolist(), cy.tolist()):
        bsi = int(bs * (1 + 2 * cs))
        my, mx = y + bsi, x + bsi
        rows = slice(int(my - bs), int(my + bs * (1 + 2 * cs))).indices(height + 2 * bsi)
        cols = slice(int(mx - bs * (1 + cs)), int(mx + bs * (1 + cs))).indices(width + 2 * bsi)
        regions.append((rows[0] - bsi, rows[1] - bsi, cols[0] - bsi, cols[1] - bsi))
    return np.asarray(regions, dtype=np.int64).reshape(-1, 4)


def _taps(starts: np.ndarray, stops: np.ndarray, axis: str) -> tuple[torch.Tensor, ...]:
    taps = [linear_taps(int(b - a), CROP_SIZE, CROP_SIZE / int(b - a), axis) for a, b in zip(starts, stops)]
    i0, i1, w0, w1 = (np.stack(t) for t in zip(*taps))
    return tuple(torch.from_numpy(a) for a in (i0 + starts[:, None], i1 + starts[:, None], w0, w1))


def crop_faces(frames: torch.Tensor, regions: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames (n, H, W, 3) and their regions -> uint8 crops (n, 224, 224, 3), bit-exact to upstream."""
    if len(regions) == 0:
        return torch.zeros((0, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8, device=frames.device)
    if ((regions[:, 1] <= regions[:, 0]) | (regions[:, 3] <= regions[:, 2])).any():
        raise ValueError("crop_faces: a crop region is empty (a face box far outside the frame).")
    device = frames.device
    r0, r1, b0, b1 = (t.to(device) for t in _taps(regions[:, 0], regions[:, 1], "y"))
    c0, c1, a0, a1 = (t.to(device) for t in _taps(regions[:, 2], regions[:, 3], "x"))
    n, height, width = frames.shape[:3]
    batch = torch.arange(n, device=device)[:, None, None]

    def sample(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # (n, 224, 224, 3) int32, 110 outside
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        values = frames[batch, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]
        return torch.where(inside[..., None], values.to(torch.int32), PAD_VALUE)

    a0, a1 = a0.to(torch.int32)[:, None, :, None], a1.to(torch.int32)[:, None, :, None]
    top = sample(r0, c0) * a0 + sample(r0, c1) * a1
    bottom = sample(r1, c0) * a0 + sample(r1, c1) * a1
    return linear_combine(top, bottom, b0.to(torch.int32)[:, :, None, None], b1.to(torch.int32)[:, :, None, None])
