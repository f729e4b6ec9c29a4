"""FrameSource: forward sweeps reuse one open decoder, jumps and backward sweeps re-seek, all give the same frames."""

from __future__ import annotations

import numpy as np

from latentsync.io.video import read_video
from latentsync.pipeline.runner import FrameSource


def test_any_access_order_gives_the_decoded_frames(clip):
    video = str(clip[0])
    want = read_video(video).frames
    n = len(want)
    source = FrameSource(video, block=8)
    order = np.concatenate([np.arange(n), np.arange(n)[::-1], np.array([3, n - 1, 0, 17 % n, 17 % n])])
    for part in np.array_split(order, 9):
        assert np.array_equal(source.get(part), want[part])


def test_forward_sweep_decodes_each_block_once(clip, monkeypatch):
    from latentsync.io import video as vio

    opened = []
    real = vio.iter_video_frames
    monkeypatch.setattr(vio, "iter_video_frames", lambda *a, **k: opened.append(k.get("start")) or real(*a, **k))
    source = FrameSource(str(clip[0]), block=8)
    n = source.num_frames
    for a in range(0, n, 5):
        source.get(np.arange(a, min(a + 5, n)))
    assert opened == [0], opened  # one decoder for the whole sweep
