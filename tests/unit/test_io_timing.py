"""Exact frame rates and sample counts."""

from __future__ import annotations

from fractions import Fraction

import pytest

from latentsync.io.timing import as_fps, samples_for_frames


@pytest.mark.parametrize("value,expected", [
    (25, Fraction(25)),
    (25.0, Fraction(25)),
    (29.97, Fraction(30000, 1001)),
    (30000 / 1001, Fraction(30000, 1001)),
    (23.976, Fraction(24000, 1001)),
    (59.94, Fraction(60000, 1001)),
    (12.5, Fraction(25, 2)),
    (Fraction(30000, 1001), Fraction(30000, 1001)),
    ("30000/1001", Fraction(30000, 1001)),
    (29.5, Fraction(59, 2)),
])
def test_as_fps(value, expected):
    assert as_fps(value) == expected


@pytest.mark.parametrize("value", [0, -25, float("nan"), float("inf"), "fast", None, True])
def test_as_fps_rejects_nonsense(value):
    with pytest.raises(ValueError, match="fps"):
        as_fps(value)


def test_samples_for_frames_is_exact_floor():
    assert samples_for_frames(0, 25, 16000) == 0
    assert samples_for_frames(30000, Fraction(30000, 1001), 48000) == 48_048_000  # 1001 s exactly
    assert samples_for_frames(1001, Fraction(30000, 1001), 48000) == 1_603_201  # floor(1603201.6)
    assert samples_for_frames(3, 29.97, 44100) == 4414  # 4414.41
    with pytest.raises(ValueError, match="sample_rate"):
        samples_for_frames(3, 25, 0)
    with pytest.raises(ValueError, match="num_frames"):
        samples_for_frames(-1, 25, 16000)
