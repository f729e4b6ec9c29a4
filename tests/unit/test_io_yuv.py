"""GPU-side RGB -> yuv420p conversion against swscale on real frames, and the writer's yuv420p input."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from latentsync.io import VideoWriter, read_video
from latentsync.io.video import iter_video_frames
from latentsync.io.yuv import rgb_to_yuv420



def real_frames(media, count: int = 3) -> np.ndarray:
    """The first frames of demo1 (1080x1920 talking head), cut to a 256-row band through the face."""
    frames = next(iter_video_frames(str(media / "demo1_video.mp4"), batch=count))[0]
    return np.ascontiguousarray(frames[:count, 700:956])


def swscale_yuv420(rgb: np.ndarray) -> np.ndarray:
    """What the writer's own conversion gives (swscale, BT.709, limited range)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU709")
    return frame.to_ndarray()


def test_matches_swscale_within_two_levels_on_real_frames(media):
    frames = real_frames(media)
    ours = rgb_to_yuv420(torch.from_numpy(frames)).numpy()
    h = frames.shape[1]
    assert ours.shape == (len(frames), h * 3 // 2, frames.shape[2]) and ours.dtype == np.uint8
    for rgb, got in zip(frames, ours):
        diff = np.abs(got.astype(int) - swscale_yuv420(rgb))
        luma, chroma = diff[:h], diff[h:]
        assert luma.max() <= 1 and (luma > 0).mean() < 0.02
        assert chroma.max() <= 2 and (chroma > 0).mean() < 0.10


def test_flat_colours_land_on_bt709_limited_range_codes():
    colours = {(0, 0, 0): (16, 128, 128), (255, 255, 255): (235, 128, 128), (255, 0, 0): (63, 102, 240),
               (0, 255, 0): (173, 42, 26), (0, 0, 255): (32, 240, 118)}
    for rgb, (y, u, v) in colours.items():
        frame = torch.tensor(rgb, dtype=torch.uint8).expand(1, 4, 6, 3).contiguous()
        planes = rgb_to_yuv420(frame)[0].flatten()
        assert set(planes[:24].tolist()) == {y}
        assert set(planes[24:30].tolist()) == {u} and set(planes[30:].tolist()) == {v}


def test_rejects_odd_sizes_and_other_dtypes():
    with pytest.raises(ValueError, match="odd"):
        rgb_to_yuv420(torch.zeros(1, 5, 6, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420(torch.zeros(1, 4, 6, 3))


def test_writer_takes_yuv420_planes_and_decodes_like_its_rgb_input(tmp_path, media):
    frames = real_frames(media, 4)
    via_rgb, via_yuv = tmp_path / "rgb.mp4", tmp_path / "yuv.mp4"
    with VideoWriter(via_rgb, 25, preset="ultrafast") as writer:
        writer.write(frames)
    with VideoWriter(via_yuv, 25, preset="ultrafast") as writer:
        planes = rgb_to_yuv420(torch.from_numpy(frames))
        writer.write_yuv420(planes[:2])
        writer.write_yuv420(planes[2:].numpy())
    a, b = read_video(via_rgb).frames.numpy().astype(int), read_video(via_yuv).frames.numpy().astype(int)
    assert a.shape == b.shape == frames.shape
    assert np.abs(b - frames).mean() < 3
    assert np.abs(a - b).mean() < 1


def test_writer_yuv420_input_is_checked(tmp_path):
    with VideoWriter(tmp_path / "a.mp4", 25, pix_fmt="yuv444p") as writer:
        with pytest.raises(ValueError, match="yuv420p writer"):
            writer.write_yuv420(np.zeros((1, 6, 4), np.uint8))
        writer.write(np.zeros((1, 4, 4, 3), np.uint8))
    with VideoWriter(tmp_path / "b.mp4", 25) as writer:
        with pytest.raises(ValueError, match="H and W even"):
            writer.write_yuv420(np.zeros((1, 7, 4), np.uint8))
        writer.write_yuv420(np.zeros((1, 6, 4), np.uint8))
        with pytest.raises(ValueError, match="size changed"):
            writer.write_yuv420(np.zeros((1, 6, 6), np.uint8))
