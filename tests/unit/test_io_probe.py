"""probe_video / iter_video_frames on tiny synthetic files: errors, ranges, batching, seeking, stills."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from latentsync.io import MediaError, VideoWriter, iter_video_frames, probe_video, read_video
from media_variants import encode_rgb


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """60 frames at 30000/1001 whose frame index is painted into them; keyframe every 12 frames."""
    path = tmp_path_factory.mktemp("probe") / "numbered.mp4"
    frames = np.zeros((60, 64, 96, 3), np.uint8)
    for i in range(60):
        frames[i, :, :, 0] = 4 * i
        frames[i, :32, :, 1] = 255 - 4 * i
    encode_rgb(path, frames, codec="libx264", fmt="mp4", rate=Fraction(30000, 1001),
               options={"preset": "ultrafast", "g": "12", "crf": "10"})
    return path, frames


def collect(path, **kwargs):
    batches = list(iter_video_frames(path, **kwargs))
    if not batches:
        return np.zeros((0,)), np.zeros((0,)), []
    frames = np.concatenate([b[0] for b in batches])
    return frames, np.concatenate([b[1] for b in batches]), [len(b[0]) for b in batches]


def test_probe_reports_exact_counts_and_rate(numbered):
    path, _ = numbered
    info = probe_video(path)
    assert (info.num_frames, info.num_frames_exact, info.fps, info.is_vfr) == (60, True, Fraction(30000, 1001), False)
    assert (info.width, info.height, info.rotation, info.codec, info.has_audio) == (96, 64, 0, "h264", False)
    assert info.duration == pytest.approx(60 * 1001 / 30000, abs=1e-6)


def test_batches_are_bounded_and_timestamps_real(numbered):
    path, frames = numbered
    out, pts, sizes = collect(path, batch=16)
    assert sizes == [16, 16, 16, 12]
    assert out.dtype == np.uint8 and out.shape == frames.shape
    assert np.abs(out.astype(int) - frames).mean() < 2
    assert np.allclose(pts, np.arange(60) * 1001 / 30000, atol=1e-9)


@pytest.mark.parametrize("start,count", [(0, 5), (1, 10), (11, 2), (12, 12), (13, 30), (50, None), (59, 5), (60, 3),
                                         (100, None), (5, 0)])
def test_ranges_match_a_full_decode(numbered, start, count):
    """Seeking to a keyframe before ``start`` must give exactly the frames of a decode from the start."""
    path, _ = numbered
    full, full_pts, _ = collect(path)
    out, pts, _ = collect(path, start=start, count=count, batch=7)
    stop = 60 if count is None else min(60, start + count)
    expected = max(0, stop - start)
    assert len(out) == expected
    if expected:
        assert np.array_equal(out, full[start:stop])
        assert np.array_equal(pts, full_pts[start:stop])


def test_bad_ranges_are_rejected(numbered):
    path, _ = numbered
    for kwargs in ({"start": -1}, {"count": -2}, {"batch": 0}):
        with pytest.raises(ValueError):
            iter_video_frames(path, **kwargs)  # raised at the call, before any decoding


def test_read_video_returns_tensors(numbered):
    path, frames = numbered
    video = read_video(path, start=10, count=20)
    assert tuple(video.frames.shape) == (20, 64, 96, 3) and str(video.frames.dtype) == "torch.uint8"
    assert video.timestamps.shape == (20,) and video.info.num_frames == 60
    with pytest.raises(MediaError, match="no frames"):
        read_video(path, start=70)


def test_still_image_is_a_one_frame_video(tmp_path):
    rgb = (np.arange(45 * 33 * 3) % 251).astype(np.uint8).reshape(45, 33, 3)
    path = tmp_path / "face.png"
    Image.fromarray(rgb).save(path)
    info = probe_video(path)
    assert (info.num_frames, info.num_frames_exact, info.width, info.height, info.has_audio) == (1, True, 33, 45, False)
    video = read_video(path)
    assert np.array_equal(video.frames.numpy()[0], rgb)  # PNG is lossless


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="not found"):
        iter_video_frames(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="notes.mp4"):
        probe_video(path)
    with pytest.raises(MediaError, match="notes.mp4"):
        next(iter_video_frames(path))


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "voice.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in stream.encode(frame):
            out.mux(packet)
    with pytest.raises(MediaError, match="no video stream.*audio"):
        probe_video(path)


def test_truncated_file_fails_with_the_file_name(tmp_path, numbered):
    path, _ = numbered
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(MediaError, match="cut.mp4"):
        probe_video(broken)


def test_writer_output_probes_with_audio(tmp_path):
    path = tmp_path / "a.mp4"
    with VideoWriter(path, 25, audio=(np.zeros((2, 8000), np.float32), 16000), preset="ultrafast") as writer:
        writer.write(np.zeros((5, 32, 32, 3), np.uint8))
    info = probe_video(path)
    assert (info.has_audio, info.audio_sample_rate, info.audio_channels) == (True, 16000, 2)


def test_color_matrix_follows_the_tag_or_is_forced(tmp_path):
    """A BT.709-tagged file decodes with BT.709 by default; "bt601" reproduces upstream's OpenCV colours."""
    path = tmp_path / "colors.mp4"
    rgb = np.zeros((4, 32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 60, 30
    with VideoWriter(path, 25, crf=0, preset="ultrafast") as writer:  # converts and tags BT.709
        writer.write(rgb)
    tagged = read_video(path).frames.numpy().astype(int)
    forced = read_video(path, color_matrix="bt601").frames.numpy().astype(int)
    assert np.abs(tagged - rgb).max() <= 2
    assert np.abs(forced - rgb).max() >= 8  # the wrong matrix visibly shifts the colour
    assert np.array_equal(read_video(path, color_matrix="bt709").frames.numpy(), tagged)
    with pytest.raises(ValueError, match="color_matrix"):
        read_video(path, color_matrix="srgb")
