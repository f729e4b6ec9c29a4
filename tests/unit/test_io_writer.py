"""VideoWriter on tiny synthetic clips: timing, audio length, odd sizes, no-clobber, clean failure."""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from latentsync.io import MediaError, VideoWriter, probe_video, read_video, samples_for_frames
from media_variants import x264_settings

AAC_FRAME = 1024


def clip(num: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth moving gradient frames (compress well, survive lossy coding within a few levels)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [np.stack([(x * 3 + 5 * i) % 256, (y * 4 + 3 * i) % 256, np.full_like(x, 40 + seed + 2 * i)], -1)
              for i in range(num)]
    return np.stack(frames).astype(np.uint8)


def tone(channels: int, samples: int) -> np.ndarray:
    t = np.arange(samples, dtype=np.float32)
    return np.stack([0.3 * np.sin(2 * np.pi * (220 * (c + 1)) * t / 44100) for c in range(channels)])


def audio_stream_info(path: Path) -> tuple[int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.rate, stream.layout.nb_channels, float(stream.duration * stream.time_base)


def partial_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


def test_ntsc_round_trip_with_audio(tmp_path):
    fps = Fraction(30000, 1001)
    frames = clip(31)
    path = tmp_path / "ntsc.mp4"
    with VideoWriter(path, fps, audio=(torch.from_numpy(tone(2, 30000)), 44100), preset="ultrafast") as writer:
        for start in range(0, len(frames), 8):
            writer.write(frames[start:start + 8])
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.is_vfr, info.codec) == (31, fps, False, "h264")
    assert info.duration == pytest.approx(float(31 / fps), abs=1e-6)
    rate, channels, seconds = audio_stream_info(path)
    assert (rate, channels) == (44100, 2)
    assert abs(seconds - float(31 / fps)) <= AAC_FRAME / 44100
    decoded = read_video(path)
    assert decoded.frames.shape == (31, 48, 64, 3)
    assert np.allclose(decoded.timestamps.numpy(), np.arange(31) / float(fps), atol=1e-9)
    assert np.abs(decoded.frames.numpy().astype(int) - frames).mean() < 3


def test_float_fps_snaps_to_ntsc_and_audio_is_padded_with_silence(tmp_path):
    path = tmp_path / "pad.mp4"
    with VideoWriter(path, 29.97, audio=(tone(1, 1000)[0], 48000), preset="ultrafast") as writer:
        writer.write(clip(60))  # 2.002 s of video, 0.02 s of audio
    assert probe_video(path).fps == Fraction(30000, 1001)
    rate, channels, seconds = audio_stream_info(path)
    assert (rate, channels) == (48000, 1)
    assert abs(seconds - 60 * 1001 / 30000) <= AAC_FRAME / 48000


def test_long_audio_is_cut_to_the_video(tmp_path):
    path = tmp_path / "cut.mp4"
    with VideoWriter(path, 25, audio=(tone(2, 44100 * 5)[None], 44100), preset="ultrafast") as writer:
        writer.write(clip(10))  # 0.4 s
    assert abs(audio_stream_info(path)[2] - 0.4) <= AAC_FRAME / 44100


def test_rate_aac_cannot_store_is_resampled_to_the_next_supported(tmp_path):
    path = tmp_path / "rate.mp4"
    writer = VideoWriter(path, 25, audio=(tone(1, 22000), 22000), preset="ultrafast")
    assert writer.sample_rate == 22050
    with writer:
        writer.write(clip(5))
    assert audio_stream_info(path)[0] == 22050


def test_vfr_timestamps_are_written_exactly(tmp_path):
    stamps = np.concatenate([[0.0], np.cumsum(np.random.default_rng(3).choice([1 / 30, 1 / 15, 0.05], 29))])
    path = tmp_path / "vfr.mp4"
    with VideoWriter(path, 24, timestamps=stamps + 5.0, audio=(tone(2, 90000), 44100)) as writer:
        writer.write(clip(30))
    info = probe_video(path)
    assert info.is_vfr and info.num_frames == 30
    decoded = read_video(path)
    assert np.abs(decoded.timestamps.numpy() - stamps).max() < 1e-5  # shifted to start at 0, 1/90000 s grid
    end = stamps[-1] + 1 / 24  # the last frame lasts 1/fps
    assert info.duration == pytest.approx(end, abs=1e-3)  # mp4 edit lists count in ms
    assert abs(audio_stream_info(path)[2] - end) <= AAC_FRAME / 44100


def test_regular_timestamps_stay_cfr(tmp_path):
    path = tmp_path / "cfr.mp4"
    with VideoWriter(path, Fraction(24000, 1001), timestamps=np.arange(12) * 1001 / 24000) as writer:
        writer.write(clip(12))
    info = probe_video(path)
    assert (info.fps, info.is_vfr) == (Fraction(24000, 1001), False)


def test_bad_timestamps_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="increase strictly"):
        VideoWriter(tmp_path / "a.mp4", 25, timestamps=[0.0, 0.1, 0.1, 0.3])
    writer = VideoWriter(tmp_path / "b.mp4", 25, timestamps=[0.0, 0.05, 0.2])
    with pytest.raises(ValueError, match="3 timestamps"):
        writer.write(clip(4))


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path):
    frames = clip(6, height=41, width=57)
    frames[:, -1, :] = [250, 10, 10]  # distinctive last row and column
    frames[:, :, -1] = [10, 250, 10]
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, 25, crf=0, preset="ultrafast") as writer:
        writer.write(frames)
    info = probe_video(path)
    assert (info.width, info.height) == (58, 42)
    out = read_video(path).frames.numpy().astype(int)
    assert np.abs(out[:, :41, :57] - frames).mean() < 3
    assert np.abs(out[:, 41, :56] - out[:, 40, :56]).mean() < 8  # the pad row repeats the last row
    assert np.abs(out[:, :40, 57] - out[:, :40, 56]).mean() < 8


def test_yuv444_keeps_odd_size(tmp_path):
    path = tmp_path / "odd444.mp4"
    with VideoWriter(path, 25, pix_fmt="yuv444p", preset="ultrafast") as writer:
        writer.write(torch.from_numpy(clip(3, height=41, width=57)))
    info = probe_video(path)
    assert (info.width, info.height, info.pix_fmt) == (57, 41, "yuv444p")


def test_existing_file_is_never_replaced_unless_asked(tmp_path):
    path = tmp_path / "mine.mp4"
    path.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        VideoWriter(path, 25)
    assert path.read_bytes() == b"user data"
    with VideoWriter(path, 25, overwrite=True, preset="ultrafast") as writer:
        writer.write(clip(2))
    assert probe_video(path).num_frames == 2


def test_file_created_meanwhile_is_not_replaced(tmp_path):
    path = tmp_path / "race.mp4"
    writer = VideoWriter(path, 25, preset="ultrafast")
    writer.write(clip(2))
    path.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        writer.close()
    assert path.read_bytes() == b"someone else's"
    assert partial_files(tmp_path) == []


def test_interrupted_write_leaves_no_file(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 25, preset="ultrafast") as writer:
            writer.write(clip(3))
            assert len(partial_files(tmp_path)) == 1  # work in progress lives under a temporary name
            raise RuntimeError("boom")
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_input_errors_are_clear(tmp_path):
    with pytest.raises(MediaError, match="extension"):
        VideoWriter(tmp_path / "x.gif", 25)
    with pytest.raises(MediaError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "x.mp4", 25)
    with pytest.raises(ValueError, match="preset"):
        VideoWriter(tmp_path / "x.mp4", 25, preset="quick")
    with pytest.raises(ValueError, match="crf"):
        VideoWriter(tmp_path / "x.mp4", 25, crf=60)
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", 0)
    with pytest.raises(ValueError, match="channels"):
        VideoWriter(tmp_path / "x.mp4", 25, audio=(np.zeros((2, 3, 100)), 16000))
    with pytest.raises(ValueError, match="NaN"):
        VideoWriter(tmp_path / "x.mp4", 25, audio=(np.full((1, 100), np.nan), 16000))
    writer = VideoWriter(tmp_path / "x.mp4", 25)
    with pytest.raises(ValueError, match="uint8"):
        writer.write(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        writer.write(np.zeros((2, 8, 8), np.uint8))
    writer.write(clip(1))
    with pytest.raises(ValueError, match="size changed"):
        writer.write(clip(1, height=50))
    writer.abort()
    with pytest.raises(MediaError, match="no frames"):
        VideoWriter(tmp_path / "y.mp4", 25).close()
    assert partial_files(tmp_path) == []


def test_metadata_tags_are_stored(tmp_path):
    path = tmp_path / "meta.mp4"
    with VideoWriter(path, 25, metadata={"prompt": '{"1": {}}'}, preset="ultrafast") as writer:
        writer.write(clip(2))
    with av.open(str(path)) as container:
        assert container.metadata["prompt"] == '{"1": {}}'


@pytest.mark.parametrize("frame_threads", [True, False])
def test_x264_threads_over_frames_unless_asked_for_slices(tmp_path, frame_threads):
    path = tmp_path / "threads.mp4"
    with VideoWriter(path, 25, preset="ultrafast", threads=2, frame_threads=frame_threads) as writer:
        writer.write(clip(12, height=128, width=128))  # x264 gives slices of at least a few macroblock rows
    settings = x264_settings(path)
    assert f"sliced_threads={0 if frame_threads else 1}" in settings and "threads=2" in settings
    assert read_video(path).frames.shape[0] == 12


def test_frame_threads_are_capped_when_the_count_is_left_to_the_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)  # a 16-core host
    path = tmp_path / "auto.mp4"
    with VideoWriter(path, 25, preset="ultrafast") as writer:
        writer.write(clip(12, height=256, width=256))
    settings = x264_settings(path)
    assert " threads=8 " in f" {settings} " and "sliced_threads=0" in settings  # x264's own choice would be 24


def test_mkv_output(tmp_path):
    path = tmp_path / "out.mkv"
    with VideoWriter(path, Fraction(30000, 1001), audio=(tone(2, 20000), 44100), preset="ultrafast") as writer:
        writer.write(clip(20))
    info = probe_video(path)
    assert info.num_frames == 20 and info.num_frames_exact and info.has_audio


def test_samples_for_frames_is_the_audio_length_the_writer_targets():
    assert samples_for_frames(31, Fraction(30000, 1001), 44100) == 45615
    assert samples_for_frames(242, 25, 16000) == 154880


def test_io_package_never_shells_out():
    """No subprocess, os.system or shell strings anywhere in latentsync/io (PyAV only)."""
    io_dir = Path(__file__).resolve().parents[2] / "latentsync" / "io"
    pattern = re.compile(r"\bsubprocess\b|os\.system|os\.popen|shell\s*=|\bffmpeg\s+-")
    offenders = [f"{p.name}:{n}" for p in io_dir.glob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
    assert len(list(io_dir.glob("*.py"))) >= 5
