"""A picture of a sync score: per-window confidence over time, drawn with PIL (no plotting library)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (24, 24, 28)
GRID = (60, 60, 68)
TEXT = (220, 220, 220)
LINE = (90, 200, 120)
LOW = (230, 110, 90)


def draw_curve(times: np.ndarray, values: np.ndarray, *, title: str = "", duration: float = 0.0,
               width: int = 768, height: int = 256, good: float = 3.0) -> np.ndarray:
    """uint8 RGB image (height, width, 3): ``values`` against ``times`` (seconds), a dashed line at ``good``
    (upstream's data filter keeps clips whose confidence reaches 3), ``title`` on top. Empty input gives a
    frame with the title only (e.g. why a clip could not be scored)."""
    image = Image.new("RGB", (int(width), int(height)), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 44, width - 12, 24, height - 22
    if title:
        draw.text((8, 5), title[: max(8, width // 7)], fill=TEXT)
    draw.rectangle([left, top, right, bottom], outline=GRID)
    times, values = np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(times) & np.isfinite(values)
    times, values = times[keep], values[keep]
    if times.size == 0:
        return np.asarray(image)
    t_max = max(float(duration), float(times.max()), 1e-6)
    v_lo, v_hi = min(0.0, float(values.min())), max(good * 1.2, float(values.max()))
    v_hi = v_hi if v_hi > v_lo else v_lo + 1.0

    def x_of(t: np.ndarray) -> np.ndarray:
        return left + (right - left) * t / t_max

    def y_of(v: np.ndarray | float) -> np.ndarray:
        return bottom - (bottom - top) * (np.asarray(v) - v_lo) / (v_hi - v_lo)

    for sec in range(0, int(math.floor(t_max)) + 1, max(1, int(t_max // 10) or 1)):
        x = float(x_of(np.float64(sec)))
        draw.line([(x, top), (x, bottom)], fill=GRID)
        draw.text((x - 3, bottom + 4), f"{sec}", fill=TEXT)
    for level in (v_lo, good, v_hi):
        y = float(y_of(level))
        draw.text((4, y - 6), f"{level:.1f}", fill=TEXT)
    y_good = float(y_of(good))
    for x in range(left, right, 8):
        draw.line([(x, y_good), (min(x + 4, right), y_good)], fill=LOW)
    xs, ys = x_of(times), y_of(values)
    gaps = np.diff(times) > 0.2  # a new track or a hole: do not join across it
    start = 0
    for stop in [*(np.nonzero(gaps)[0] + 1).tolist(), len(xs)]:
        points = list(zip(xs[start:stop].tolist(), ys[start:stop].tolist()))
        if len(points) > 1:
            draw.line(points, fill=LINE, width=2)
        elif points:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=LINE)
        start = stop
    return np.asarray(image)
