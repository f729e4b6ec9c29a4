"""Face tracks within a scene, as upstream's ``SyncNetDetector.track_face`` builds them.

Tracks are built greedily, one at a time: walking the scene's frames in order, the first remaining face starts
the track and a face joins it when its box overlaps the track's last box by IoU > 0.5 within 25 frames; a gap
of more than 25 frames ends the search in every later frame. Taking a face out of a frame's list makes
upstream's loop skip the face after it in that frame (Python's list iteration), which is kept here so that
the same faces end up in the same tracks. A track with more than ``min_track`` faces is linearly interpolated
over the frames it spans and kept when its mean box side exceeds ``min_face_size`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5
MAX_GAP = 25  # frames without a matching face before a track ends ("num_failed_det")
MIN_TRACK = 50  # upstream's eval_sync_conf.py value; a track needs MORE faces than this
MIN_FACE_SIZE = 100


@dataclass
class FaceTrack:
    """One face followed over consecutive frames: frame indices (n,) and boxes (n, 4) ``x1, y1, x2, y2``."""

    frames: np.ndarray
    boxes: np.ndarray

    @property
    def start(self) -> int:
        return int(self.frames[0])

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``x1, y1, x2, y2`` boxes (no +1), as upstream's ``bounding_box_iou``."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _take_track(faces: list[list[tuple[int, np.ndarray]]]) -> list[tuple[int, np.ndarray]]:
    """Remove one greedy track's faces from ``faces`` (per frame lists of (frame, box)) and return them."""
    track: list[tuple[int, np.ndarray]] = []
    for frame_faces in faces:
        i = 0
        while i < len(frame_faces):
            frame, box = frame_faces[i]
            if track and frame - track[-1][0] > MAX_GAP:
                break
            if not track or box_iou(box, track[-1][1]) > IOU_THRESHOLD:
                track.append(frame_faces.pop(i))
            i += 1  # after a removal the list iterator lands one face further on: that face is skipped
    return track


def linear_fill(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """Linear interpolation with scipy ``interp1d``'s arithmetic (a known point is reached from the segment on
    its left: ``slope * (x - x_lo) + y_lo``), so boxes agree with upstream to the last bit."""
    hi = np.clip(np.searchsorted(x, x_new, side="left"), 1, len(x) - 1)
    lo = hi - 1
    slope = (y[hi] - y[lo]) / (x[hi] - x[lo])[:, None]
    return slope * (x_new - x[lo])[:, None] + y[lo]


def _interpolate(track: list[tuple[int, np.ndarray]]) -> FaceTrack:
    frames = np.array([f for f, _ in track], dtype=np.int64)
    boxes = np.array([b for _, b in track], dtype=np.float64)
    span = np.arange(frames[0], frames[-1] + 1)
    if len(frames) == 1:
        return FaceTrack(span, boxes)
    return FaceTrack(span, linear_fill(frames, boxes, span))


def track_faces(detections: list[np.ndarray], start: int = 0, *, min_track: int = MIN_TRACK,
                min_face_size: float = MIN_FACE_SIZE) -> list[FaceTrack]:
    """Tracks of one scene from per-frame boxes ``(n, >=4)`` (frame ``start + i`` for list item ``i``)."""
    faces = [[(start + i, np.asarray(d[:4], dtype=np.float64)) for d in dets] for i, dets in enumerate(detections)]
    tracks = []
    while True:
        track = _take_track(faces)
        if not track:
            return tracks
        if len(track) > min_track:
            kept = _interpolate(track)
            sides = kept.boxes[:, 2:] - kept.boxes[:, :2]
            if max(sides[:, 0].mean(), sides[:, 1].mean()) > min_face_size:
                tracks.append(kept)


def scene_tracks(detections: list[np.ndarray], scenes: list[tuple[int, int]], *, min_track: int = MIN_TRACK,
                 min_face_size: float = MIN_FACE_SIZE) -> list[FaceTrack]:
    """Tracks of every scene at least ``min_track`` frames long, in scene order (upstream's order)."""
    tracks = []
    for first, end in scenes:
        if end - first >= min_track:
            tracks += track_faces(detections[first:end], first, min_track=min_track, min_face_size=min_face_size)
    return tracks
