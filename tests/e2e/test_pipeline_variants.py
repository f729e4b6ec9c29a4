"""The file pipeline (what the CLI and the path-based node run) on derived media: other frame rates, VFR,
landscape, stereo 44.1/48 kHz and mp3 audio, still images, and every length policy. Frame counts, fps,
durations and audio/video alignment are checked exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from latentsync.audio.features import whisper_features
from latentsync.audio.waveform import load_audio, to_16k_mono
from latentsync.audio.windows import upstream_frame_count
from latentsync.io.video import iter_video_frames, probe_video
from latentsync.pipeline.runner import RunOptions, lipsync_file
from latentsync.pipeline.sampler import SamplerOptions

AAC_FRAME_S = 1024 / 44100 + 1e-3


def run(loaded, video, audio, out, policy="pingpong", **kw):
    options = RunOptions(sampler=SamplerOptions(steps=1), length_policy=policy, detector="dlib", **kw)
    return lipsync_file(loaded, loaded.vae, str(video), str(audio), str(out), options, device="cpu",
                        dtype=torch.float32)


def audio_frames(loaded, audio, fps) -> int:
    wave, sr = load_audio(str(audio))
    rows = whisper_features(loaded.whisper, to_16k_mono(wave, sr)).shape[0]
    return upstream_frame_count(rows, float(fps))


def check_av(out, frames, fps):
    info = probe_video(str(out))
    assert info.num_frames == frames and info.num_frames_exact
    assert info.fps == fps
    wave, sr = load_audio(str(out))
    assert abs(wave.shape[-1] / sr - frames / float(fps)) <= AAC_FRAME_S
    return info


@pytest.mark.parametrize("policy", ["pingpong", "loop", "trim", "hold_last", "pad_audio"])
def test_length_policies_at_30fps(loaded, variants, tmp_path, policy):
    video, audio = variants.get("h264_30"), variants.get("wav_44k_stereo")
    n_audio = audio_frames(loaded, audio.path, video.fps)
    expected = {"pingpong": n_audio, "loop": n_audio, "hold_last": n_audio,
                "trim": min(video.num_frames, n_audio), "pad_audio": video.num_frames}[policy]
    report = run(loaded, video.path, audio.path, tmp_path / "out.mp4", policy)
    assert report.frames == expected and report.fps == Fraction(30)
    check_av(tmp_path / "out.mp4", expected, Fraction(30))


@pytest.mark.parametrize("video_name,audio_name", [("h264_24", "wav_48k_stereo"), ("landscape", "mp3"),
                                                   ("h264_ntsc", "mp3")])
def test_rates_sizes_and_audio_formats(loaded, variants, tmp_path, video_name, audio_name):
    video, audio = variants.get(video_name), variants.get(audio_name)
    out = tmp_path / "out.mp4"
    report = run(loaded, video.path, audio.path, out, "trim")
    expected = min(video.num_frames, audio_frames(loaded, audio.path, video.fps))
    info = check_av(out, expected, video.fps)
    assert (info.width, info.height) == (video.width, video.height)
    assert report.frames == expected


def test_vfr_keeps_frame_timing(loaded, variants, tmp_path):
    video, audio = variants.get("vfr"), variants.get("wav_44k_stereo")
    out = tmp_path / "out.mp4"
    report = run(loaded, video.path, audio.path, out, "trim")
    n = report.frames
    assert n == min(video.num_frames, audio_frames(loaded, audio.path, video.fps))
    pts = np.concatenate([p for _, p in iter_video_frames(str(out))])
    assert len(pts) == n
    np.testing.assert_allclose(pts - pts[0], video.timestamps[:n] - video.timestamps[0], atol=1.5e-3)


def test_still_image_is_held_for_the_audio(loaded, variants, tmp_path):
    still, audio = variants.get("still_png"), variants.get("mp3")
    out = tmp_path / "out.mp4"
    report = run(loaded, still.path, audio.path, out, "trim", still_fps=25.0)
    expected = audio_frames(loaded, audio.path, 25)
    assert report.frames == expected
    check_av(out, expected, Fraction(25))


def test_face_clip_is_generated_and_composited(loaded, clip, tmp_path):
    """On a real face every frame is found and repainted inside the face only."""
    video, audio = clip
    out = tmp_path / "out.mp4"
    report = run(loaded, video, audio, out, "trim")
    assert report.missing_face_frames == []
    src = np.concatenate([f for f, _ in iter_video_frames(str(video))])[: report.frames]
    got = np.concatenate([f for f, _ in iter_video_frames(str(out))])
    changed = np.abs(got.astype(int) - src.astype(int)).max(axis=(0, 3)) > 24  # beyond re-encoding noise
    ys, xs = np.nonzero(changed)
    assert len(ys) > 0, "nothing was repainted"
    # Repainted pixels lie in the lower face (below the eyes, inside the face box), not in the background.
    assert ys.min() > 256 * 0.35 and 256 * 0.15 < xs.mean() < 256 * 0.85
