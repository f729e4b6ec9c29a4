"""The streaming runner's graph options: alignment smoothing on/off (one function, stages.face_matrices, for the
runner and Face Align Crop) and the mp4 metadata tags the Video File node passes ComfyUI's prompt and workflow
through, the stages a profiling timer sees and x264's thread count; on the real demo clip with the tiny models."""

from __future__ import annotations

import contextlib
import re

import av
import numpy as np
import torch
from face_points import face_points
from media_variants import x264_settings
from pipeline_capture import stage_log

from latentsync.face import align
from latentsync.pipeline import stages
from latentsync.pipeline.runner import RunOptions, lipsync_file
from latentsync.pipeline.sampler import SamplerOptions


def jittered_points(frames: int) -> np.ndarray:
    """Alignment points of the clip's face, each moved a few pixels frame to frame (what smoothing irons out:
    upstream's filter smooths the nose's offset from the brows, so a rigid shift would not show)."""
    gen = torch.Generator().manual_seed(0)
    base = face_points((128.0, 120.0), 90.0)
    return np.stack([(base + torch.randn(3, 2, generator=gen) * 3.0).numpy() for _ in range(frames)])


def run(loaded, clip, out, **options):
    video, audio = clip
    run_options = RunOptions(sampler=SamplerOptions(steps=1, seed=5), crf=0, **options)
    report = lipsync_file(loaded, loaded.vae, str(video), str(audio), str(out), run_options, device="cpu",
                          dtype=torch.float32, points=jittered_points(12))
    with av.open(str(out)) as container:
        tags = dict(container.metadata)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.int16)
    return report, frames, tags


def test_metadata_tags(loaded, clip, tmp_path):
    meta = {"prompt": '{"2": {"class_type": "LatentSyncVideoFile"}}', "workflow": '{"nodes": []}'}
    report, tagged, tags = run(loaded, clip, tmp_path / "tagged.mp4", metadata=meta)
    assert report.frames == tagged.shape[0] > 0 and not report.missing_face_frames
    assert {k: tags.get(k) for k in meta} == meta
    _, plain, plain_tags = run(loaded, clip, tmp_path / "plain.mp4")
    assert "workflow" not in plain_tags and "prompt" not in plain_tags
    assert np.array_equal(plain, tagged)  # tags change nothing else


def test_smoothing_off_is_each_frames_own_alignment(loaded, clip, tmp_path):
    points = torch.from_numpy(jittered_points(12))
    resets = torch.zeros(12, dtype=torch.bool)
    resets[6] = True  # a cut
    smooth = stages.face_matrices(points, resets, 256)
    rough = stages.face_matrices(points, resets, 256, smooth=False)
    own = torch.cat([align.matrices_from_points(points[i:i + 1], 256) for i in range(12)])
    assert torch.equal(rough, own)
    assert torch.equal(smooth, align.matrices_from_points(points, 256, align.AlignmentSmoother(), resets))
    assert torch.equal(smooth[[0, 6]], own[[0, 6]]) and not torch.equal(smooth, own)

    _, on, _ = run(loaded, clip, tmp_path / "on.mp4")
    _, off, _ = run(loaded, clip, tmp_path / "off.mp4", smooth=False)
    assert on.shape == off.shape and np.abs(on - off).max() > 0


def test_timer_sees_every_stage_and_the_writers_close_last(loaded, clip, tmp_path):
    """Profiling callers (bench/bench_pipeline.py) get the writer's close as its own stage: the output is finished
    inside it, after every other stage, so no run time is left outside the timed stages unnoticed."""
    video, audio = clip
    out = tmp_path / "timed.mp4"
    seen: list[tuple[str, str, bool]] = []

    @contextlib.contextmanager
    def timer(name: str):
        seen.append((name, "enter", out.exists()))
        yield
        seen.append((name, "exit", out.exists()))

    lipsync_file(loaded, loaded.vae, str(video), str(audio), str(out), RunOptions(sampler=SamplerOptions(steps=1)),
                 device="cpu", dtype=torch.float32, points=jittered_points(12), timer=timer)
    names = [name for name, event, _ in seen if event == "enter"]
    assert {"audio", "align", "vae_encode", "sample", "vae_decode", "composite", "encode_wait"} <= set(names)
    assert names.count("write_close") == 1 and names[-1] == "write_close"
    assert seen[-2:] == [("write_close", "enter", False), ("write_close", "exit", True)]


def test_host_heap_is_trimmed_once_per_window_unless_turned_off(loaded, clip, tmp_path):
    """RunOptions.trim_host_heap: the runner gives the heap's free pages back after each window (its own stage, so a
    profile prices it), and not at all when off."""
    video, audio = clip
    for on in (True, False):
        names: list[str] = []
        options = RunOptions(sampler=SamplerOptions(steps=1), window_frames=16, trim_host_heap=on, overwrite=True)
        lipsync_file(loaded, loaded.vae, str(video), str(audio), str(tmp_path / "trim.mp4"), options,
                     device="cpu", dtype=torch.float32, points=jittered_points(12), timer=stage_log(names))
        windows = names.count("composite")
        assert windows >= 1 and names.count("host_trim") == (windows if on else 0), names


def test_encode_threads_reach_x264(loaded, clip, tmp_path):
    """RunOptions.encode_threads is x264's frame-thread count (x264 writes its settings into the stream)."""
    for threads in (5, 0):  # 5: a count the writer's own choice (1, 3, 4, 6, 7 or 8 threads) never gives
        out = tmp_path / f"threads_{threads}.mp4"
        run(loaded, clip, out, encode_threads=threads)
        settings = x264_settings(out)
        assert "sliced_threads=0" in settings
        found = int(re.search(r"(?:^| )threads=(\d+)", settings).group(1))
        if threads:
            assert found == threads, settings
        else:
            assert 1 <= found <= 8, settings
