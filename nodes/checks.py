"""Input checks shared by the nodes; each returns an error message naming the input, or None.

Numbers go through the library's ranges (``latentsync.option_checks``), so NaN and infinities, which ComfyUI's
own min/max check lets through (``nan < min`` is False), are refused, and so are out-of-range values where a
node's ``VALIDATE_INPUTS`` takes the input (ComfyUI then skips its own range check).
"""

from __future__ import annotations

from typing import Any, Optional


def fps_input(tooltip: str, **extra: Any) -> tuple[str, dict]:
    """The FLOAT fps input the nodes share: upstream's rate by default and the library's range, from one place."""
    from ..latentsync.configs import UPSTREAM_FPS
    from ..latentsync.option_checks import SPECS

    spec = SPECS["fps"]
    return ("FLOAT", {"default": UPSTREAM_FPS, "min": spec.low, "max": spec.high, "step": 0.001, **extra,
                      "tooltip": tooltip})


def fps_problem(fps: Any, name: str = "fps") -> Optional[str]:
    """Message when ``fps`` is not a finite frame rate within 0.01..240 (None = linked, checked at run time)."""
    from ..latentsync.option_checks import number_problem

    problem = number_problem(fps, "fps", name)
    if problem:
        return problem + "; connect the video's frame rate (e.g. the fps output of the video loader)."
    return None


def numbers_problem(**values: Any) -> Optional[str]:
    """The first message for ``name=value`` pairs checked against the ranges of the same name (None values pass)."""
    from ..latentsync.option_checks import number_problem

    for name, value in values.items():
        problem = number_problem(value, name)
        if problem:
            return problem
    return None


def require_numbers(**values: Any) -> None:
    """Raise ValueError with :func:`numbers_problem`'s message (run-time check, also for linked inputs)."""
    problem = numbers_problem(**values)
    if problem:
        raise ValueError(problem)


def image_batch_problem(images: Any, name: str = "images") -> Optional[str]:
    """Message when ``images`` is not a non-empty IMAGE batch (F, H, W, C) with C in 1, 3, 4."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[0] == 0 or shape[-1] not in (1, 3, 4):
        return f"{name} must be an IMAGE batch (frames, height, width, channels); got shape {shape or type(images).__name__}."
    return None
