"""The tail's steps taking turns with the last full chunk's (LipsyncSampler.interleave_tail, on by default): a tail
left alone in the last window joins the window before, and the written frames are those of the plain run, bit for
bit (tiny models on the CPU, demo1's face and speech)."""

from __future__ import annotations

import numpy as np
import torch
from face_points import face_points
from pipeline_capture import written_frames

from latentsync.pipeline.runner import RunOptions, lipsync_file
from latentsync.pipeline.sampler import LipsyncSampler, SamplerOptions

FRAMES = 12  # the clip's frames; its speech asks for 20, so pingpong plays them back
CHUNK = 6  # 20 frames: three chunks and a 2-frame tail, one chunk per window, so the tail is alone in the last


def run_video(loaded, clip, out):
    video, audio = clip
    points = np.stack([face_points((128.0, 120.0), 90.0).numpy()] * FRAMES)
    options = RunOptions(sampler=SamplerOptions(steps=3, seed=5, chunk_frames=CHUNK, deepcache=True),
                         window_frames=CHUNK, crf=0, preset="ultrafast", overwrite=True)
    return lipsync_file(loaded, loaded.vae, str(video), str(audio), str(out), options, device="cpu",
                        dtype=torch.float32, points=points)


def test_a_lone_tail_joins_the_last_window_and_takes_turns_bit_for_bit(loaded, clip, tmp_path, monkeypatch):
    windows: list[int] = []  # frames per sampler call (one per window)
    sample = LipsyncSampler.sample

    def counting(self, encoded, *args, **kwargs):
        windows.append(encoded.num_frames)
        return sample(self, encoded, *args, **kwargs)

    monkeypatch.setattr(LipsyncSampler, "sample", counting)
    monkeypatch.setattr(LipsyncSampler, "interleave_tail", False)
    report, plain = written_frames(monkeypatch, lambda: run_video(loaded, clip, tmp_path / "plain.mp4"))
    assert report.frames == 20 and windows == [6, 6, 6, 2]
    windows.clear()
    monkeypatch.setattr(LipsyncSampler, "interleave_tail", True)
    report, turns = written_frames(monkeypatch, lambda: run_video(loaded, clip, tmp_path / "turns.mp4"))
    assert report.frames == 20 and windows == [6, 6, 8]
    assert np.array_equal(turns, plain)
