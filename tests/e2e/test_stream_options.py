"""The streaming runner writes the mp4 metadata tags it is given (the Video File node passes ComfyUI's prompt and
workflow through them), on the real demo clip with the tiny models."""

from __future__ import annotations

import av
import numpy as np
import torch
from face_points import face_points

from latentsync.pipeline.runner import RunOptions, lipsync_file
from latentsync.pipeline.sampler import SamplerOptions


def jittered_points(frames: int) -> np.ndarray:
    """Alignment points of the clip's face, moved a few pixels frame to frame (what smoothing irons out)."""
    gen = torch.Generator().manual_seed(0)
    base = face_points((128.0, 120.0), 90.0)
    return np.stack([(base + torch.randn(2, generator=gen) * 3.0).numpy() for _ in range(frames)])


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
