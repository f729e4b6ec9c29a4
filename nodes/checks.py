"""Input checks shared by the nodes; each returns an error message naming the input, or None."""

from __future__ import annotations

import math
from typing import Any, Optional


def fps_problem(fps: Any, name: str = "fps") -> Optional[str]:
    """Message when ``fps`` is not a positive finite number (None = linked, checked at run time)."""
    if fps is None:
        return None
    try:
        value = float(fps)
    except (TypeError, ValueError):
        return f"{name} must be a number, got {fps!r}."
    if not math.isfinite(value) or value <= 0:
        return f"{name} must be > 0 (got {fps}); connect the video's frame rate (e.g. the fps output of the video loader)."
    return None


def image_batch_problem(images: Any, name: str = "images") -> Optional[str]:
    """Message when ``images`` is not a non-empty IMAGE batch (F, H, W, C) with C in 1, 3, 4."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[0] == 0 or shape[-1] not in (1, 3, 4):
        return f"{name} must be an IMAGE batch (frames, height, width, channels); got shape {shape or type(images).__name__}."
    return None
