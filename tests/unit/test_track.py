"""Face choice and continuity, gap filling, cut flags and streaming equivalence of latentsync.face.track."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.face.detectors.base import Face
from latentsync.face.track import FaceTrack, FaceTracker, frame_signatures, track_faces

SIZE = (480, 640)


def face(cx: float, cy: float, s: float = 60.0, score: float = 0.9) -> Face:
    """A face centred at (cx, cy) with eyebrow distance ``s``; box about 1.2 s wide and 1.6 s tall."""
    pts = np.array([[cx - s / 2, cy - s / 4], [cx + s / 2, cy - s / 4], [cx, cy + s / 4]], np.float32)
    box = np.array([cx - 0.6 * s, cy - 0.8 * s, cx + 0.6 * s, cy + 0.8 * s], np.float32)
    return Face(box=box, score=score, points3=pts)


def walk(n: int, x0: float, y0: float, dx: float = 2.0, s: float = 60.0) -> list[Face]:
    return [face(x0 + dx * i, y0, s) for i in range(n)]


def test_single_face_all_found_and_points_follow():
    faces = walk(20, 200, 240)
    track = track_faces([[f] for f in faces], SIZE, detector="test")
    assert track.found.all() and not track.resets.any()
    np.testing.assert_allclose(track.points, np.stack([f.points3 for f in faces]))
    assert track.points.dtype == np.float32 and track.boxes.shape == (20, 4)
    rep = track.report()
    assert rep["missing"] == 0 and rep["frames"] == 20 and rep["detector"] == "test"


def test_gap_is_interpolated_and_ends_are_held():
    faces = walk(12, 200, 240, dx=5)
    dets = [[f] for f in faces]
    for i in (0, 1, 5, 6, 7, 11):
        dets[i] = []
    track = track_faces(dets, SIZE)
    assert track.missing_frames == [0, 1, 5, 6, 7, 11]
    np.testing.assert_allclose(track.points[0], faces[2].points3)  # held before the first found frame
    np.testing.assert_allclose(track.points[11], faces[10].points3)  # held after the last one
    for i in (5, 6, 7):  # linear between frames 4 and 8 = the true motion here
        np.testing.assert_allclose(track.points[i], faces[i].points3, atol=1e-4)
    assert np.isfinite(track.points).all()


def test_no_face_anywhere_gives_finite_placeholders():
    track = track_faces([[] for _ in range(5)], SIZE)
    assert not track.found.any() and np.isfinite(track.points).all()
    assert track.report()["missing_frames"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("choice,expected_x", [(0, 150), (1, 450), ("largest", 450)])
def test_two_faces_choice_is_consistent(choice, expected_x):
    left = walk(30, 150, 240, dx=1, s=50)
    right = walk(30, 450, 240, dx=-1, s=70)
    dets = []
    for i in range(30):
        pair = [left[i], right[i]]
        dets.append(pair if i % 2 else pair[::-1])  # detector order must not matter
    track = track_faces(dets, SIZE, face_index=choice)
    assert track.found.all()
    cx = track.points[:, 2, 0]
    np.testing.assert_allclose(cx[0], expected_x, atol=1)
    expected = np.array([(left if expected_x == 150 else right)[i].points3[2, 0] for i in range(30)])
    np.testing.assert_allclose(cx, expected)


def test_followed_face_is_not_swapped_when_another_grows_larger():
    main = walk(20, 200, 240, dx=1, s=60)
    other = [face(480, 240, 40 + 4 * i) for i in range(20)]  # grows past the main face
    dets = [[main[i], other[i]] for i in range(20)]
    tracked = track_faces(dets, SIZE, face_index="largest")
    np.testing.assert_allclose(tracked.points[:, 2, 0], [f.points3[2, 0] for f in main])
    upstream = track_faces(dets, SIZE, face_index="largest_each_frame")
    assert upstream.points[-1, 2, 0] == pytest.approx(480)  # upstream re-ranks every frame


def test_index_waits_for_enough_faces():
    dets = [[face(300, 240)]] * 3 + [[face(100, 240), face(300, 240)]] * 3
    track = track_faces(dets, SIZE, face_index=1)
    # the second face from the left in frame 3 is the one at x=300; followed back, it is also in frames 0-2
    assert track.found.all()
    np.testing.assert_allclose(track.points[:, 2, 0], 300)
    first = track_faces(dets, SIZE, face_index=0)  # index 0 is anchored at frame 0 already
    np.testing.assert_allclose(first.points[:, 2, 0], 300)
    cut_sig = np.array([[0.0]] * 2 + [[0.9]] * 4, np.float32)  # shot change at frame 2: no match across it
    split = track_faces(dets, SIZE, face_index=1, signatures=cut_sig)
    assert split.found.tolist() == [False, False, True, True, True, True]
    never = track_faces([[face(300, 240)]] * 4, SIZE, face_index=1)
    assert not never.found.any() and len(never) == 4


def test_other_face_is_not_taken_while_followed_face_is_briefly_lost():
    a = walk(10, 150, 240)
    b = [face(500, 240) for _ in range(10)]
    dets = [[a[i], b[i]] if i not in (4, 5) else [b[i]] for i in range(10)]
    track = track_faces(dets, SIZE, face_index=0)
    assert track.missing_frames == [4, 5]
    assert (track.points[:, 2, 0] < 400).all()


def test_jump_sets_reset_and_gap_across_a_cut_is_held():
    a = walk(6, 150, 240, s=60)
    b = walk(6, 480, 300, s=100)
    dets = [[f] for f in a] + [[], []] + [[f] for f in b]
    track = track_faces(dets, SIZE, reacquire_after=1)
    assert track.cut_frames == [8]
    np.testing.assert_allclose(track.points[6], a[-1].points3)  # held, not swept across the frame
    np.testing.assert_allclose(track.points[7], a[-1].points3)


def test_content_cut_from_signatures_resets_at_the_cut_frame():
    a = walk(5, 150, 240)
    b = walk(5, 170, 250)
    dets = [[f] for f in a] + [[]] + [[f] for f in b]
    sig = np.zeros((11, 8), np.float32)
    sig[5:] = 0.8  # the shot changes at frame 5
    track = track_faces(dets, SIZE, signatures=sig)
    assert track.cut_frames == [5] and track.missing_frames == [5]
    np.testing.assert_allclose(track.points[5], b[0].points3)  # after the cut: the new shot's face
    no_sig = track_faces(dets, SIZE)
    assert no_sig.cut_frames == []  # small move, no content signal: interpolated, no reset


def test_frame_signatures_tell_cut_from_motion():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (2, 64, 48, 3), dtype=np.uint8)
    s = frame_signatures(np.concatenate([a[:1], a[:1], a[1:]]))
    assert s.shape == (3, 16 * 16 * 3) and 0 <= s.min() and s.max() <= 1
    assert np.abs(s[1] - s[0]).mean() == 0 and np.abs(s[2] - s[1]).mean() > 0
    np.testing.assert_allclose(frame_signatures(a.astype(np.float32) / 255), frame_signatures(a), atol=1e-5)


@pytest.mark.parametrize("choice", [0, 1, "largest"])
def test_streaming_equals_offline_for_any_windowing(choice):
    rng = np.random.default_rng(1)
    dets = []
    for i in range(60):
        f = face(200 + 3 * i, 240 + 2 * np.sin(i / 5), 60)
        other = [face(560, 100, 40)] if i >= 9 else []  # a second face appears later (anchors index 1)
        dets.append([] if rng.random() < 0.3 else [f] + other)
    sig = rng.random((60, 4)).astype(np.float32) * 0.05
    sig[30:] += 0.5
    offline = track_faces(dets, SIZE, signatures=sig, face_index=choice)
    assert offline.found.sum() > 20
    for window in (1, 7, 16):
        tracker = FaceTracker(frame_size=SIZE, face_index=choice)
        parts = [tracker.push(dets[i : i + window], sig[i : i + window]) for i in range(0, 60, window)]
        parts.append(tracker.finish())
        starts = [p.start for p in parts if len(p)]
        assert starts == sorted(starts)
        online = FaceTrack.concat(parts)
        assert len(online) == 60
        np.testing.assert_array_equal(online.found, offline.found)
        np.testing.assert_array_equal(online.resets, offline.resets)
        np.testing.assert_allclose(online.points, offline.points)


def test_matrices_use_resets():
    pytest.importorskip("latentsync.face.align")
    a = walk(4, 150, 240)
    b = walk(4, 450, 300, s=90)
    track = track_faces([[f] for f in a + b], SIZE)
    m = track.matrices(256)
    assert tuple(m.shape) == (8, 2, 3) and bool(np.isfinite(m.numpy()).all())


def test_bad_face_index_is_rejected():
    with pytest.raises(ValueError, match="face_index"):
        track_faces([[]], SIZE, face_index=-1)
    with pytest.raises(ValueError, match="face_index"):
        track_faces([[]], SIZE, face_index="biggest")
