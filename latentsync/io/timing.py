"""Frame-rate and duration arithmetic shared by the reader, the writer and the length policies.

Rates are exact :class:`fractions.Fraction` values so that NTSC rates (30000/1001) survive a round trip
through a container and durations in samples come out the same everywhere.
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Real

# NTSC-family rates that a float (29.97, 23.976, ...) almost always means.
_NTSC_BASES = (24, 30, 48, 60, 120, 240)
_NTSC_TOLERANCE = 2e-4


def as_fps(value: Fraction | Real | str) -> Fraction:
    """Return a frame rate as an exact positive Fraction; 29.97 / 23.976 floats snap to n*1000/1001."""
    if isinstance(value, str):
        try:
            value = Fraction(value)
        except ValueError as exc:
            raise ValueError(f"fps {value!r} is not a number; give e.g. 25, 29.97 or '30000/1001'") from exc
    if isinstance(value, bool) or not isinstance(value, (Fraction, Real)):
        raise ValueError(f"fps must be a number or Fraction, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"fps must be finite, got {value}")
    if value <= 0:
        raise ValueError(f"fps must be positive, got {value}")
    if isinstance(value, (Fraction, int)):
        return Fraction(value)
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        if abs(float(value) - float(ntsc)) < _NTSC_TOLERANCE:
            return ntsc
    return Fraction(float(value)).limit_denominator(1001)


def samples_for_frames(num_frames: int, fps: Fraction | Real, sample_rate: int) -> int:
    """Audio samples that cover ``num_frames`` video frames: floor(num_frames / fps * sample_rate).

    Floor, as upstream cuts its audio with ``int(n / fps * sr)``; exact rational arithmetic, so
    30000/1001 fps gives the same count on every machine.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return math.floor(Fraction(num_frames) * int(sample_rate) / as_fps(fps))
