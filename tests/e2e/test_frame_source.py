"""FrameSource: forward sweeps reuse one open decoder, jumps and backward sweeps re-seek, all give the same frames."""

from __future__ import annotations

import tracemalloc

import numpy as np

from latentsync.io.video import read_video
from latentsync.pipeline.runner import FrameSource, _HostWindow


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


def test_whole_blocks_are_handed_over_not_copied(clip):
    """A window that is exactly one block gets the decoder's array: while it is taken, the traced peak holds one
    window's frames (the block being decoded), not a second copy."""
    import tracemalloc

    video = str(clip[0])
    want = read_video(video).frames.numpy()
    source = FrameSource(video, block=4)
    window_bytes = want[:4].nbytes
    taken = []
    tracemalloc.start()
    try:
        for a in range(0, 8, 4):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            taken.append(source.get(np.arange(a, a + 4)))
            peak = tracemalloc.get_traced_memory()[1] - before
            assert window_bytes <= peak < 1.5 * window_bytes, (peak, window_bytes)
    finally:
        tracemalloc.stop()
    assert np.array_equal(np.concatenate(taken), want[:8])


def test_a_taken_block_changed_by_its_caller_does_not_reach_later_requests(clip):
    video = str(clip[0])
    want = read_video(video).frames.numpy()
    source = FrameSource(video, block=4)
    first = source.get(np.arange(0, 4))
    first[:] = 0  # the caller owns what it was given
    assert np.array_equal(source.get(np.arange(4, 8)), want[4:8])
    assert np.array_equal(source.get(np.array([1, 2, 3])), want[1:4])  # decoded again, not the zeroed array
    assert np.array_equal(source.get(np.arange(0, 4)), want[0:4])


def test_a_host_window_is_let_go_after_its_first_take_and_decoded_again_for_a_retry():
    again = []

    def decode_again():
        again.append(1)
        return np.ones((8, 256, 256, 3), np.uint8)

    tracemalloc.start()
    try:
        held = _HostWindow(np.zeros((8, 256, 256, 3), np.uint8), decode_again)  # 1.5 MiB
        frames = held.take()
        assert not again and tracemalloc.get_traced_memory()[0] >= frames.nbytes
        del frames  # the caller (the upload to the device) is done with them
        assert tracemalloc.get_traced_memory()[0] < 1 << 20  # nothing else held them
        retried = held.take()
    finally:
        tracemalloc.stop()
    assert again == [1] and int(retried.min()) == 1
    kept = _HostWindow(retried)  # no way to decode again: the frames stay (the sync gate needs them after)
    assert kept.take() is retried and kept.take() is retried
