"""Per-frame audio windows: upstream's rules at 25 fps, sane tables at other and variable frame rates."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from latentsync.audio.windows import (
    frame_window_indices,
    frame_window_indices_at,
    frame_windows,
    upstream_frame_count,
    window_size,
)

OTHER_FPS = [24.0, 30.0, 29.97, 30000 / 1001, 60.0, 59.94, 23.976, 50.0, 12.5]


def _reference_count(rows: int, fps: float) -> int:
    """Upstream's loop, written out: emit chunk i, stop once int(i * (50.0 / fps)) exceeds the row count."""
    step, i = 50.0 / fps, 0
    while True:
        stop = int(i * step) > rows
        i += 1
        if stop:
            return i


def _reference_rows(rows: int, frame: int, fps: float) -> list[int]:
    centre = int(frame * 50 / fps)
    return [min(max(r, 0), rows - 1) for r in range(centre - 4, centre + 6)]


@pytest.mark.parametrize("rows", [1, 2, 3, 10, 149, 150, 151, 480, 1572])
def test_25fps_matches_upstream_exactly(rows):
    count = upstream_frame_count(rows, 25)
    assert count == rows // 2 + 2 == _reference_count(rows, 25.0)
    table = frame_window_indices(rows, count, 25)
    assert table.dtype == torch.long and table.shape == (count, 10)
    assert table.tolist() == [_reference_rows(rows, i, 25.0) for i in range(count)]


@pytest.mark.parametrize("fps", OTHER_FPS)
def test_other_fps_follow_upstream_formula_and_are_sane(fps):
    rows = 997
    count = upstream_frame_count(rows, fps)
    assert count == _reference_count(rows, fps)
    assert abs(count - rows * fps / 50) <= 3  # about one frame per 1/fps s of audio, plus upstream's extra ones
    table = frame_window_indices(rows, count, fps)
    assert table.tolist() == [_reference_rows(rows, i, fps) for i in range(count)]
    centres = table[:, 4]
    steps = centres.diff()
    assert bool((steps >= 0).all()) and int(steps.max()) <= -(-50 // fps) + 1
    assert int(table.min()) == 0 and int(table.max()) == rows - 1
    inner = table[(centres >= 4) & (centres + 5 < rows)]
    assert torch.equal(inner - inner[:, :1], torch.arange(10).expand_as(inner))  # ten consecutive rows


@pytest.mark.parametrize("fps", [25.0, 29.97, 60.0])
def test_streaming_slices_equal_the_full_table(fps):
    full = frame_window_indices(500, 400, fps)
    for start, length in [(0, 16), (16, 16), (391, 9), (395, 20)]:
        part = frame_window_indices(500, length, fps, start_frame=start)
        expected = frame_window_indices(500, start + length, fps)[start:]
        assert torch.equal(part, expected)
        if start + length <= 400:
            assert torch.equal(part, full[start:start + length])


def test_frames_past_the_audio_clamp_to_the_last_row():
    table = frame_window_indices(20, 40, 25)
    assert bool((table[15:] == 19).all()) and table[0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]


def test_feat_length_changes_window_width():
    assert window_size((2, 2)) == 10 and window_size((1, 3)) == 10 and window_size((0, 0)) == 2
    table = frame_window_indices(100, 5, 25, feat_length=(1, 1), start_frame=10)
    assert table[0].tolist() == list(range(18, 24))


@pytest.mark.parametrize("fps", OTHER_FPS + [25.0])
def test_timestamps_on_a_constant_grid_match_the_constant_fps_table(fps):
    frames = 20000
    times = torch.arange(frames, dtype=torch.float64) / fps
    assert torch.equal(frame_window_indices_at(10**6, times), frame_window_indices(10**6, frames, fps))


def test_timestamps_are_exact_where_upstreams_float_expression_is_not():
    # int(i * 50 / fps) with fps = 24000/1001 (a float) lands 1 ulp below some exact integers
    # (frame 480: 1000.9999999999999); timestamps give the exact rational centre there.
    fps_exact = Fraction(24000, 1001)
    frames = 5000
    times = torch.arange(frames, dtype=torch.float64) / float(fps_exact)
    centres = frame_window_indices_at(10**6, times)[:, 4]
    exact = [int(i * 50 / fps_exact) for i in range(frames)]
    assert centres.tolist() == exact
    constant = frame_window_indices(10**6, frames, float(fps_exact))[:, 4]
    differ = (constant != centres).nonzero().flatten().tolist()
    assert differ and 480 in differ and len(differ) < frames / 100
    assert all(int(constant[i]) == exact[i] - 1 for i in differ)


def test_variable_frame_rate_timestamps():
    times = torch.tensor([0.0, 0.033, 0.1, 0.1001, 0.5, 2.0, 5.95, 9.99])
    table = frame_window_indices_at(300, times)
    assert table[:, 4].tolist() == [0, 1, 5, 5, 25, 100, 297, 299]
    assert table[-2].tolist() == [293, 294, 295, 296, 297, 298, 299, 299, 299, 299]
    assert table[-1].tolist() == [299] * 10


def test_frame_windows_token_order():
    rows, layers, width = 30, 5, 3
    features = torch.arange(rows * layers * width, dtype=torch.float32).view(rows, layers, width)
    table = frame_window_indices(rows, 4, 25)
    windows = frame_windows(features, table)
    assert windows.shape == (4, 10 * layers, width)
    for frame in range(4):
        for t in range(10):
            for layer in range(layers):
                assert torch.equal(windows[frame, t * layers + layer], features[table[frame, t], layer])


@pytest.mark.parametrize(
    "call",
    [
        lambda: upstream_frame_count(10, 0),
        lambda: upstream_frame_count(10, float("nan")),
        lambda: frame_window_indices(0, 5, 25),
        lambda: frame_window_indices(10, -1, 25),
        lambda: frame_window_indices(10, 5, 25, start_frame=-2),
        lambda: frame_window_indices_at(10, torch.tensor([0.0, float("inf")])),
        lambda: frame_windows(torch.zeros(5, 2, 3), torch.tensor([[0, 5]])),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
