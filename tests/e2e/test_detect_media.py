"""The offline detector on the real demo videos: a face in every sampled frame, points where the eyebrows and
nose are, face-less frames and cuts reported, two faces picked consistently, 4K and tiny frames handled.

Samples every 10th frame to stay fast; full-run numbers are in docs/detectors.md (bench/eval_detectors.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentsync.face.detectors import create_detector
from latentsync.face.track import frame_signatures, track_faces

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None,
    reason="offline detector packages not installed (pip install dlib-bin face-recognition-models)",
)
STEP = 10
REFERENCE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "tools" / "baseline" / "data" / "demo1_landmarks3.json"
)


def sample_frames(path: Path, step: int = STEP) -> tuple[np.ndarray, list[int]]:
    """Every ``step``-th frame (RGB uint8) and the frame indices; only those are converted."""
    frames, index = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i % step == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
                index.append(i)
    return np.stack(frames), index


@pytest.fixture(scope="module")
def detector():
    return create_detector("dlib", threads=2)


@pytest.fixture(scope="module")
def demo1(media):
    return sample_frames(media / "demo1_video.mp4")


@pytest.fixture(scope="module")
def demo2(media):
    return sample_frames(media / "demo2_video.mp4")


def brow_distance(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[..., 0, :] - points[..., 1, :], axis=-1)


@pytest.mark.parametrize("name", ["demo1", "demo2"])
def test_face_found_in_every_sampled_frame(detector, name, request):
    frames, _ = request.getfixturevalue(name)
    faces = detector.detect(frames)
    assert all(len(f) == 1 for f in faces), [len(f) for f in faces]  # exactly one person in these videos
    pts = np.stack([f[0].points3 for f in faces])
    # geometry of a frontal face: left brow left of right brow, nose below both, plausible size
    assert (pts[:, 0, 0] < pts[:, 1, 0]).all() and (pts[:, 2, 1] > pts[:, :2, 1].max(1)).all()
    assert ((brow_distance(pts) > 60) & (brow_distance(pts) < 250)).all()
    track = track_faces(faces, frames.shape[1:3], signatures=frame_signatures(frames))
    assert track.report()["missing"] == 0 and track.report()["cuts"] == 0


def test_points_agree_with_reference_landmarks(detector, demo1):
    if not REFERENCE.is_file():
        pytest.skip(f"reference landmarks not found at {REFERENCE}")
    ref = np.asarray(json.loads(REFERENCE.read_text())["landmarks3"], np.float64)
    frames, index = demo1
    pts = np.stack([f[0].points3 for f in detector.detect(frames)])
    err = np.linalg.norm(pts - ref[index], axis=-1) / brow_distance(ref[index])[:, None]
    # the reference is MediaPipe in static mode (about 6% frame-to-frame jitter and occasional scale errors)
    assert np.median(err) < 0.12 and np.percentile(err, 90) < 0.3


def test_blank_and_faceless_shot_are_missing_and_cut(detector, demo1):
    frames, _ = demo1
    clip = frames[:6]
    background = np.ascontiguousarray(np.repeat(clip[:1, :300], 1, axis=0))  # the sky above her head
    bg = (
        F.interpolate(
            torch.from_numpy(background).permute(0, 3, 1, 2).float(),
            size=clip.shape[1:3],
            mode="bilinear",
            align_corners=False,
        )
        .round()
        .clamp(0, 255)
        .byte()
        .permute(0, 2, 3, 1)
        .numpy()
    )
    video = np.concatenate([clip, np.zeros_like(clip[:2]), bg.repeat(3, axis=0), clip[:3]])
    faces = detector.detect(video)
    assert [len(f) for f in faces] == [1] * 6 + [0] * 5 + [1] * 3
    track = track_faces(faces, video.shape[1:3], signatures=frame_signatures(video))
    rep = track.report()
    assert rep["missing_frames"] == list(range(6, 11))
    assert 6 in rep["cut_frames"] and np.isfinite(track.points).all()


def _face_crop(frame: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    cx, cy = points.mean(0)
    half = int(brow_distance(points) * 2.2)
    y0, x0 = max(int(cy) - half, 0), max(int(cx) - half, 0)
    crop = (
        torch.from_numpy(np.ascontiguousarray(frame[y0 : y0 + 2 * half, x0 : x0 + 2 * half]))
        .permute(2, 0, 1)[None]
        .float()
    )
    out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()


def test_two_faces_side_by_side(detector, demo1, demo2):
    f1, f2 = demo1[0][:4], demo2[0][:4]
    p1 = [f[0].points3 for f in detector.detect(f1)]
    p2 = [f[0].points3 for f in detector.detect(f2)]
    canvas = np.full((4, 640, 1000, 3), 90, np.uint8)
    for i in range(4):
        canvas[i, 100:520, 20:440] = _face_crop(f1[i], p1[i], 420)  # left, larger
        canvas[i, 150:490, 600:940] = _face_crop(f2[i], p2[i], 340)  # right, smaller
    faces = detector.detect(canvas)
    assert [len(f) for f in faces] == [2] * 4
    for choice, left_side in ((0, True), (1, False), ("largest", True)):
        track = track_faces(faces, canvas.shape[1:3], face_index=choice)
        nose_x = track.points[:, 2, 0]
        assert track.found.all()
        assert ((nose_x < 500) if left_side else (nose_x > 500)).all(), (choice, nose_x)


def test_4k_frame_finds_the_face_at_the_same_place(detector, demo1):
    frame = demo1[0][:1]
    small = detector.detect(frame)[0][0].points3
    big = (
        F.interpolate(
            torch.from_numpy(frame).permute(0, 3, 1, 2).float(), size=(3840, 2160), mode="bilinear", align_corners=False
        )
        .round()
        .clamp(0, 255)
        .byte()
        .permute(0, 2, 3, 1)
        .numpy()
    )
    faces = detector.detect(big)
    assert len(faces[0]) == 1
    np.testing.assert_allclose(faces[0][0].points3 / 2, small, atol=0.06 * brow_distance(small))


def test_rgba_grey_and_float_inputs_are_converted(detector, demo1):
    frame = demo1[0][:1]
    rgb = detector.detect(frame)[0][0].points3
    rgba = np.concatenate([frame, np.full(frame.shape[:3] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(detector.detect(rgba)[0][0].points3, rgb)
    np.testing.assert_array_equal(detector.detect(torch.from_numpy(frame).float() / 255)[0][0].points3, rgb)
    grey = frame.mean(-1).round().astype(np.uint8)
    g = detector.detect(grey)[0]
    assert len(g) == 1 and np.abs(g[0].points3 - rgb).max() < 0.1 * brow_distance(rgb)
