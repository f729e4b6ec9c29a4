"""Real media through latentsync.io: every derived variant decodes to the truth it was made from,
round trips keep frame counts / exact fps / VFR timing / A-V length, and streaming keeps memory flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from latentsync.io import VideoWriter, iter_video_frames, probe_video, read_video
from latentsync.pipeline.length import apply_to_frames, apply_to_waveform, plan_length
from media_variants import Variant, decode_audio, encode_rgb, session_variants

VIDEO_VARIANTS = ["h264_25", "h264_ntsc", "h264_30", "h264_24", "hevc", "av1", "vp9_odd", "landscape", "vfr",
                  "rotated", "still_png"]
AUDIO_VARIANTS = ["wav_44k_stereo", "wav_48k_stereo", "mp3"]
AAC_FRAME = 1024
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def variants(media, tmp_path_factory):
    return session_variants(media, tmp_path_factory)


def variant(variants, name: str):
    try:
        return variants.get(name)
    except (NotImplementedError, av.FFmpegError) as exc:  # encoder or PyAV feature missing on this machine
        pytest.skip(f"cannot make {name} here: {exc}")


def audio_seconds(path: Path) -> tuple[int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.rate, stream.layout.nb_channels, float(stream.duration * stream.time_base)


@pytest.mark.parametrize("name", VIDEO_VARIANTS)
def test_variant_decodes_to_its_source(variants, name):
    v: Variant = variant(variants, name)
    info = probe_video(v.path)
    assert (info.num_frames, info.num_frames_exact) == (v.num_frames, True)
    assert (info.width, info.height, info.rotation) == (v.width, v.height, v.rotation)
    assert info.codec == v.codec
    assert info.is_vfr == v.vfr
    if not v.vfr:
        assert info.fps == v.fps
        assert info.duration == pytest.approx(v.num_frames / float(v.fps), abs=2e-3)
    assert info.has_audio == (v.audio_rate is not None)
    if v.audio_rate:
        assert (info.audio_sample_rate, info.audio_channels) == (v.audio_rate, v.audio_channels)

    sizes, frames, stamps = [], [], []
    for batch, pts in iter_video_frames(v.path, batch=16):
        sizes.append(len(batch))
        frames.append(batch)
        stamps.append(pts)
    assert max(sizes) <= 16 and sum(sizes) == v.num_frames
    frames, stamps = np.concatenate(frames), np.concatenate(stamps)
    assert frames.shape == v.frames.shape
    assert np.abs(frames.astype(np.int16) - v.frames).mean() < 6  # lossy codecs at small sizes
    assert np.allclose(stamps, v.timestamps, atol=1e-6)


def test_rotation_is_applied_exactly(variants):
    rotated, base = variant(variants, "rotated"), variants.get("h264_25")
    upright = read_video(rotated.path).frames.numpy()
    stored = read_video(base.path).frames.numpy()  # the same bitstream without the display matrix
    assert upright.shape == (base.num_frames, base.width, base.height, 3)
    assert np.array_equal(upright, np.rot90(stored, k=-1, axes=(1, 2)))  # 90 degrees clockwise


@pytest.mark.parametrize("name", ["h264_ntsc", "hevc", "vp9_odd"])
def test_start_offset_matches_sequential_decode(variants, name):
    v = variant(variants, name)
    full = read_video(v.path)
    start = v.num_frames // 2 + 1
    part = read_video(v.path, start=start, count=7)
    assert torch.equal(part.frames, full.frames[start:start + 7])
    assert torch.equal(part.timestamps, full.timestamps[start:start + 7])


def test_demo_video_probe(media):
    info = probe_video(media / "demo1_video.mp4")
    assert (info.width, info.height, info.num_frames, info.fps, info.codec) == (1080, 1920, 250, Fraction(25), "hevc")
    assert (info.is_vfr, info.rotation, info.audio_sample_rate, info.audio_channels) == (False, 0, 44100, 2)
    assert info.duration == pytest.approx(10.0)


@pytest.mark.parametrize("audio_name", AUDIO_VARIANTS)
def test_encode_round_trip_keeps_counts_rate_and_av_length(variants, tmp_path, audio_name):
    source = variants.get("h264_ntsc")
    sound = variants.get(audio_name)
    wave, rate = decode_audio(sound.path)
    assert (rate, wave.shape[0]) == (sound.sample_rate, 2)
    fps = Fraction(30000, 1001)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps, audio=(torch.from_numpy(wave), rate), preset="ultrafast") as writer:
        for frames, _ in iter_video_frames(source.path, batch=16):
            writer.write(frames)
    info = probe_video(out)
    assert (info.num_frames, info.fps, info.is_vfr) == (source.num_frames, fps, False)
    video_seconds = source.num_frames / float(fps)
    assert info.duration == pytest.approx(video_seconds, abs=1e-6)
    out_rate, channels, seconds = audio_seconds(out)
    assert (out_rate, channels) == (rate, 2)  # written at its own rate
    assert abs(seconds - video_seconds) <= AAC_FRAME / rate
    written, _ = decode_audio(out)  # the encoder keeps the sound (not just the length)
    n = min(written.shape[1], wave.shape[1], rate)
    assert np.corrcoef(written[0, :n], wave[0, :n])[0, 1] > 0.95


def test_vfr_timing_survives_read_and_write(variants, tmp_path):
    v = variants.get("vfr")
    frames, stamps = [], []
    for batch, pts in iter_video_frames(v.path, batch=8):
        frames.append(batch)
        stamps.append(pts)
    stamps = np.concatenate(stamps)
    out = tmp_path / "vfr_copy.mp4"
    with VideoWriter(out, probe_video(v.path).fps, timestamps=stamps, preset="ultrafast") as writer:
        for batch in frames:
            writer.write(batch)
    info = probe_video(out)
    assert info.is_vfr and info.num_frames == v.num_frames
    again = read_video(out).timestamps.numpy()
    assert np.abs(again - v.timestamps).max() < 1e-6


def test_still_image_becomes_a_video_as_long_as_the_audio(variants, tmp_path):
    still = variants.get("still_png")
    sound = variants.get("wav_48k_stereo")
    wave, rate = decode_audio(sound.path)
    fps = Fraction(25)
    audio_frames = int(wave.shape[1] * fps / rate)  # caller's count (3 s -> 75)
    image = read_video(still.path).frames
    for policy in ("pingpong", "trim", "pad_audio"):
        plan = plan_length(image.shape[0], audio_frames, policy)
        assert plan.num_frames == audio_frames
    frames = apply_to_frames(image, plan)
    track = apply_to_waveform(torch.from_numpy(wave), rate, plan, fps)
    out = tmp_path / "still.mp4"
    with VideoWriter(out, fps, audio=(track, rate), preset="ultrafast") as writer:
        for start in range(0, plan.num_frames, 32):
            writer.write(frames[start:start + 32])
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height) == (audio_frames, still.width, still.height)
    assert abs(audio_seconds(out)[2] - audio_frames / 25) <= AAC_FRAME / rate


@pytest.mark.parametrize("policy,audio_frames,expected_frames", [
    ("pingpong", 120, 120), ("loop", 120, 120), ("hold_last", 120, 120), ("trim", 30, 30), ("pad_audio", 30, 50),
])
def test_length_policy_output_file(variants, tmp_path, policy, audio_frames, expected_frames):
    v = variants.get("h264_25")
    video = read_video(v.path)
    wave, rate = variants.source_audio()
    plan = plan_length(video.frames.shape[0], audio_frames, policy)
    assert plan.num_frames == expected_frames
    track = apply_to_waveform(torch.from_numpy(wave[:, : audio_frames * rate // 25]), rate, plan, 25)
    assert track.shape[-1] == expected_frames * rate // 25
    out = tmp_path / f"{policy}.mp4"
    with VideoWriter(out, 25, audio=(track, rate), preset="ultrafast") as writer:
        writer.write(apply_to_frames(video.frames, plan))
    info = probe_video(out)
    assert info.num_frames == expected_frames
    assert abs(audio_seconds(out)[2] - expected_frames / 25) <= AAC_FRAME / rate
    written = read_video(out).frames.numpy().astype(np.int16)
    picked = video.frames.numpy()[plan.source_index.numpy()]
    assert np.abs(written - picked).mean() < 4


# --------------------------------------------------------------------------------------------- memory
STREAM_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from latentsync.io import VideoWriter, iter_video_frames, probe_video

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    src, dst = sys.argv[1], sys.argv[2]
    fps = probe_video(src).fps
    before = rss_mb()
    peak, frames = before, 0
    with VideoWriter(dst, fps, preset="ultrafast", threads=2) as writer:
        for batch, _ in iter_video_frames(src, batch=16, threads=2):
            writer.write(batch)
            frames += len(batch)
            peak = max(peak, rss_mb())
    print(json.dumps({"frames": frames, "stream_mb": peak - before}))
""")


def _long_clip(path: Path, clip: Path, repeats: int) -> None:
    """Concatenate a short clip's packets ``repeats`` times (no re-encode: fast, any length)."""
    with av.open(str(clip)) as src_probe:
        clip_ticks = src_probe.streams.video[0].duration
    with av.open(str(path), "w", format="mp4") as dst:
        stream = None
        for r in range(repeats):
            with av.open(str(clip)) as src:
                template = src.streams.video[0]
                if stream is None:
                    stream = dst.add_stream_from_template(template)
                for packet in src.demux(template):
                    if packet.dts is None:
                        continue
                    shift = r * clip_ticks
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = stream
                    dst.mux(packet)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
def test_streaming_read_write_memory_is_flat(variants, tmp_path):
    """RSS while decoding + encoding a 720p clip must not grow with its length (5x the frames here)."""
    frames = variants.landscape_frames()
    hd = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").to_ndarray(format="rgb24", width=1280, height=720)
                   for f in frames])
    clip = tmp_path / "clip720.mp4"
    # every clip starts on a keyframe and has no B-frame delay
    encode_rgb(clip, hd, codec="libx264", fmt="mp4", rate=Fraction(25), options={"preset": "ultrafast", "bf": "0"})
    used = {}
    for repeats in (4, 20):
        long = tmp_path / f"long_{repeats}.mp4"
        _long_clip(long, clip, repeats)
        result = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(long), str(tmp_path / f"o{repeats}.mp4")],
                                capture_output=True, text=True, cwd=REPO, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["frames"] == repeats * len(frames)
        used[repeats] = report["stream_mb"]
    extra_frames_mb = 16 * len(frames) * 1280 * 720 * 3 / 2**20
    print(f"RSS added by streaming: {used[4]:.0f} MB for {4 * len(frames)} frames, {used[20]:.0f} MB for "
          f"{20 * len(frames)} frames (keeping the extra frames would take {extra_frames_mb:.0f} MB)")
    assert used[20] - used[4] < 40
    assert used[20] < 400  # a batch, the decoder's and x264's frame queues: bounded, not per-video
