"""The speaker by sync on real media with tiny random SyncNet weights (behaviour, not quality): two talking heads
side by side, one of them time-reversed, in two shots (demo1, then demo2 with the sides swapped). The choice per
shot follows the scorer's ranking, is deterministic and reported; the face tracker follows the plan."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402

from latentsync.face.detectors.base import Face  # noqa: E402
from latentsync.face.track import track_faces  # noqa: E402
from latentsync.metrics import tiny  # noqa: E402
from latentsync.metrics.score import SyncOptions, rank_tracks  # noqa: E402
from latentsync.metrics.speaker import choose_speakers  # noqa: E402
from latentsync.metrics.syncnet_v2 import load_syncnet_v2  # noqa: E402
from latentsync.metrics.tracks import FaceTrack  # noqa: E402

SHOT = 40
LEFT, RIGHT = [8.0, 8.0, 232.0, 232.0], [248.0, 8.0, 472.0, 232.0]
OPTIONS = SyncOptions(min_track=20, min_face_size=50)


@pytest.fixture(scope="module")
def two_faces(media):
    """80 frames 240 x 480: shot 1 demo1 (left in time, right reversed), shot 2 demo2 (left reversed, right in
    time), with the speech of each; per frame both faces as detections."""
    a = sync_media.face_frames(media, SHOT, size=240)
    b = sync_media.face_frames(media, SHOT, size=240, name="demo2_video.mp4")
    frames = np.concatenate([np.concatenate([a, a[::-1]], axis=2), np.concatenate([b[::-1], b], axis=2)])
    wav = torch.cat([sync_media.speech(media, SHOT), sync_media.speech(media, SHOT, "demo2_audio.wav")])
    detections = [np.array([LEFT + [0.99], RIGHT + [0.99]]) for _ in range(2 * SHOT)]
    return torch.from_numpy(np.ascontiguousarray(frames)), wav, detections


@pytest.fixture(scope="module")
def syncnet(tmp_path_factory):
    return load_syncnet_v2(tiny.write_syncnet_v2(tmp_path_factory.mktemp("sn") / "s.model", seed=3))


@pytest.fixture(scope="module")
def plan(two_faces, syncnet):
    frames, wav, detections = two_faces
    return choose_speakers(frames, wav, 25, syncnet, None, OPTIONS, detections=detections)


def test_one_choice_per_shot_following_the_ranking(plan, two_faces, syncnet):
    frames, wav, _ = two_faces
    assert [(s.start, s.stop) for s in plan.shots] == [(0, SHOT), (SHOT, 2 * SHOT)]
    for shot in plan.shots:
        assert len(shot.candidates) == 2 and shot.chosen is not None
        confidences = [c["confidence"] for c in shot.candidates]
        assert shot.chosen == int(np.argmax(confidences))
        assert sorted(tuple(c["box"]) for c in shot.candidates) == sorted([tuple(LEFT), tuple(RIGHT)])
        # the reported confidences are the scorer's (rank_tracks on the same tracks)
        c = shot.candidates[shot.chosen]
        first, last = c["frames"]
        track = FaceTrack(np.arange(first, last + 1), np.tile(np.asarray(c["box"]), (last - first + 1, 1)))
        assert rank_tracks(frames, wav, syncnet, [track], OPTIONS)[0].confidence == pytest.approx(c["confidence"],
                                                                                                  abs=1e-4)
        for j in range(shot.start, shot.stop):  # every frame of the shot has the chosen face's box
            assert list(plan.boxes[j]) == c["box"]
    lines = plan.report()
    assert len(lines) == 2 and lines[0].startswith("frames 0-39: face ") and " speaks (confidence " in lines[0]


def test_choice_is_deterministic(plan, two_faces, syncnet):
    frames, wav, detections = two_faces
    again = choose_speakers(frames, wav, 25, syncnet, None, OPTIONS, detections=detections)
    assert again.as_dict() == plan.as_dict()
    assert all(np.array_equal(again.boxes[k], plan.boxes[k]) for k in plan.boxes)


def _faces(box_list):
    out = []
    for box in box_list:
        x1, y1, x2, y2 = box
        w = x2 - x1
        pts = np.array([[x1 + 0.3 * w, y1 + 0.35 * w], [x1 + 0.7 * w, y1 + 0.35 * w], [x1 + 0.5 * w, y1 + 0.55 * w]],
                       np.float32)
        out.append(Face(np.asarray(box, np.float32), 0.99, pts))
    return out


def test_face_tracker_follows_the_plan(plan):
    detections = [_faces([LEFT, RIGHT]) for _ in range(2 * SHOT)]
    track = track_faces(detections, (240, 480), face_index=plan)
    for shot in plan.shots:
        want = shot.candidates[shot.chosen]["box"]
        assert np.allclose(track.boxes[shot.start:shot.stop], want)
    assert track.found.all()
    with pytest.raises(ValueError, match="syncnet_v2.model"):
        track_faces(detections, (240, 480), face_index="speaker")


def test_silent_shot_has_no_choice_and_the_tracker_takes_the_largest(two_faces, syncnet):
    frames, wav, detections = two_faces
    silent = wav.clone()
    silent[SHOT * 640:] = 0
    plan = choose_speakers(frames, silent, 25, syncnet, None, OPTIONS, detections=detections)
    assert plan.shots[0].chosen is not None and plan.shots[1].chosen is None
    assert "silent" in plan.shots[1].reason and "no speaker chosen" in plan.report()[1]
    assert all(k < SHOT for k in plan.boxes)
    bigger = [8.0, 8.0, 232.0, 232.0], [250.0, 4.0, 478.0, 236.0]
    track = track_faces([_faces(bigger) for _ in range(2 * SHOT)], (240, 480), face_index=plan)
    assert np.allclose(track.boxes[SHOT:], bigger[1])  # no plan there: the largest face, chosen at the shot start
    assert track.resets[SHOT]
