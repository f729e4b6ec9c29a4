"""One face per frame across a video: face choice, continuity, gap filling and shot-cut flags.

Upstream detects every frame independently, takes the largest face and aborts the run when a frame has
none. Here the chosen face is followed by box overlap / centre distance, frames without it are marked
``found=False`` and get points interpolated between the nearest found frames (held at the ends, and held on
each side of a cut), and cuts set ``resets`` so the alignment smoother restarts there.

:class:`FaceTracker` is the streaming form (feed windows of detections, get finished frames back);
:func:`track_faces` runs it over a whole video. Both give identical results for any windowing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .detectors.base import Face, box_area

log = logging.getLogger(__name__)

FaceChoice = Union[int, str, object]  # an index (left to right), "largest" (tracked), "largest_each_frame"
# (upstream), or a plan with ``pick(frame, faces)`` (the speaker by sync: latentsync.metrics.speaker.SpeakerPlan)
_CHOICES = ("largest", "largest_each_frame")
SPEAKER = "speaker"


def is_plan(face_index: object) -> bool:
    """Whether ``face_index`` is a per-frame plan (an object with ``pick(frame, faces)``) rather than a rule."""
    return callable(getattr(face_index, "pick", None))


@dataclass
class FaceTrack:
    """Per-frame result of tracking: what the alignment and paste-back stages consume.

    ``points (F, 3, 2)`` float32 frame pixels (always finite), ``found (F,)`` True where the chosen face was
    detected, ``resets (F,)`` True at shot cuts (restart the alignment smoother), ``boxes (F, 4)`` float32
    (filled like the points), ``detector`` the detector's description, ``start`` the index of the first frame.
    """

    points: np.ndarray
    found: np.ndarray
    resets: np.ndarray
    boxes: np.ndarray
    detector: str = ""
    start: int = 0

    def __len__(self) -> int:
        return int(self.found.shape[0])

    @property
    def missing_frames(self) -> list[int]:
        return [self.start + int(i) for i in np.flatnonzero(~self.found)]

    @property
    def cut_frames(self) -> list[int]:
        return [self.start + int(i) for i in np.flatnonzero(self.resets)]

    def report(self) -> dict:
        """Counts and frame indices of missing faces and cuts, and which detector ran."""
        missing = self.missing_frames
        return {
            "frames": len(self),
            "found": len(self) - len(missing),
            "missing": len(missing),
            "missing_frames": missing,
            "cuts": len(self.cut_frames),
            "cut_frames": self.cut_frames,
            "detector": self.detector,
        }

    def matrices(self, resolution: int, smoother=None) -> torch.Tensor:
        """Alignment matrices ``(F, 2, 3)`` for these points, restarting the smoother at the cuts."""
        from .align import matrices_from_points

        return matrices_from_points(torch.from_numpy(self.points), resolution, smoother, torch.from_numpy(self.resets))

    @staticmethod
    def concat(parts: Sequence["FaceTrack"]) -> "FaceTrack":
        parts = [p for p in parts if len(p)]
        if not parts:
            return FaceTrack(
                np.zeros((0, 3, 2), np.float32), np.zeros(0, bool), np.zeros(0, bool), np.zeros((0, 4), np.float32)
            )
        return FaceTrack(
            np.concatenate([p.points for p in parts]),
            np.concatenate([p.found for p in parts]),
            np.concatenate([p.resets for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            parts[0].detector,
            parts[0].start,
        )


def frame_signatures(frames: np.ndarray | torch.Tensor, size: int = 16) -> np.ndarray:
    """Cheap per-frame content fingerprints ``(F, size*size*3)`` in [0, 1] for cut detection.

    Area-averaged ``size x size`` colour thumbnails; works on uint8 or float frames ``(F, H, W, 3)`` on any
    device (only the thumbnails come back to the CPU).
    """
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # torch cannot wrap read-only (memory-mapped) arrays
    x = torch.as_tensor(frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"frame_signatures: frames must be (F, H, W, C), got shape {tuple(x.shape)}.")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    # Thin the frame to a few samples per thumbnail cell first, so no full-size float copy is ever made.
    step_h, step_w = max(1, x.shape[1] // (4 * size)), max(1, x.shape[2] // (4 * size))
    x = x[:, ::step_h, ::step_w, :3].permute(0, 3, 1, 2).float() / scale
    thumbs = F.adaptive_avg_pool2d(x, (size, size))
    return thumbs.flatten(1).cpu().numpy().astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a (4,)`` with boxes ``b (N, 4)``."""
    lt = np.maximum(a[:2], b[:, :2])
    rb = np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area_a = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    area_b = np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6, None)
    return inter / (area_a + area_b - inter)


def _face_size(points: np.ndarray, box: np.ndarray) -> float:
    """A scale for jumps: the larger of the eyebrow distance and half the box diagonal (robust to profiles)."""
    brow = float(np.linalg.norm(points[0] - points[1]))
    half_diag = 0.5 * float(np.hypot(box[2] - box[0], box[3] - box[1]))
    return max(brow, half_diag, 1.0)


def default_points(frame_size: tuple[int, int]) -> np.ndarray:
    """Finite placeholder points (a face in the frame centre) for videos where no face is ever found."""
    h, w = frame_size
    s = 0.1 * min(h, w)
    cx, cy = w / 2, h / 2
    return np.array([[cx - s, cy - s], [cx + s, cy - s], [cx, cy]], np.float32)


@dataclass
class _Pending:
    """A frame whose points are not final yet (face missing, waiting for the next found frame)."""

    index: int
    reset: bool


@dataclass
class FaceTracker:
    """Streaming face choice across windows of per-frame detections.

    ``face_index``: an int counts faces left to right (box centres) in the first frame that has more than
    that many faces; ``"largest"`` takes the largest face of the first frame with a face; both are then
    followed by continuity. ``"largest_each_frame"`` is upstream's rule (no continuity).
    ``min_iou`` / ``max_center_jump`` (in face sizes): how far the face may move between found frames and
    still be the same one; ``cut_jump``: a move of the chosen face's points larger than this many face sizes
    (or a size change beyond ``cut_scale``) counts as a cut; ``cut_threshold``: mean absolute difference of
    consecutive :func:`frame_signatures` above which a frame starts a new shot; ``reacquire_after``: frames
    without the followed face after which it is chosen again by the ``face_index`` rule.
    """

    frame_size: tuple[int, int]
    face_index: FaceChoice = "largest"
    min_iou: float = 0.3
    max_center_jump: float = 0.6
    cut_jump: float = 0.75
    cut_scale: float = 1.6
    cut_threshold: float = 0.1
    reacquire_after: int = 12
    detector: str = ""
    _next: int = field(default=0, init=False, repr=False)
    _target: Face | None = field(default=None, init=False, repr=False)
    _last_found: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _lost_for: int = field(default=0, init=False, repr=False)
    _prev_sig: np.ndarray | None = field(default=None, init=False, repr=False)
    _pending: list[_Pending] = field(default_factory=list, init=False, repr=False)
    _unanchored: list[tuple[int, list, bool]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.face_index == SPEAKER:
            raise ValueError(
                "face_index 'speaker' must be resolved into a speaker plan first (latentsync.metrics.speaker."
                "choose_speakers or plan_for_file, with SyncNet v2 auxiliary/syncnet_v2.model and S3FD "
                "auxiliary/sfd_face.pth); pass the plan as face_index."
            )
        if is_plan(self.face_index):
            return
        if isinstance(self.face_index, bool) or not (
            (isinstance(self.face_index, int) and self.face_index >= 0) or self.face_index in _CHOICES
        ):
            raise ValueError(
                f"face_index must be an int >= 0, 'largest' or 'largest_each_frame', got {self.face_index!r}."
            )

    # ------------------------------------------------------------------------------------------ face choice
    def _acquire(self, faces: Sequence[Face]) -> Face | None:
        if not faces:
            return None
        if is_plan(self.face_index) or self.face_index in _CHOICES:  # a plan's frames without a choice: largest
            return max(faces, key=lambda f: box_area(f.box))  # max() keeps the first on ties, like upstream
        if len(faces) <= self.face_index:
            return None
        by_x = sorted(faces, key=lambda f: float(f.box[0] + f.box[2]))
        return by_x[self.face_index]

    def _follow(self, faces: Sequence[Face], prev: Face) -> Face | None:
        if not faces:
            return None
        boxes = np.stack([np.asarray(f.box, np.float32) for f in faces])
        ious = _iou(np.asarray(prev.box, np.float32), boxes)
        best = int(np.argmax(ious))
        if ious[best] >= self.min_iou:
            return faces[best]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        prev_c = (np.asarray(prev.box[:2]) + np.asarray(prev.box[2:])) / 2
        dist = np.linalg.norm(centres - prev_c, axis=1) / _face_size(prev.points3, prev.box)
        best = int(np.argmin(dist))
        return faces[best] if dist[best] <= self.max_center_jump else None

    def _is_jump(self, face: Face) -> bool:
        if self._last_found is None:
            return False
        _, pts, box = self._last_found
        size_prev = _face_size(pts, box)
        size_now = _face_size(np.asarray(face.points3), np.asarray(face.box))
        move = float(np.max(np.linalg.norm(np.asarray(face.points3) - pts, axis=1))) / size_prev
        ratio = max(size_now / size_prev, size_prev / size_now)
        return move > self.cut_jump or ratio > self.cut_scale

    def _choose(self, faces: Sequence[Face], content_cut: bool, index: int = -1) -> tuple[Face | None, bool]:
        """The chosen face of one frame (or None) and whether this frame starts a new shot."""
        if is_plan(self.face_index):
            starts = getattr(self.face_index, "starts_shot", None)
            content_cut = content_cut or bool(starts is not None and starts(index) and index > 0)
            planned = self.face_index.pick(index, faces)
            if planned is not None:  # the speaker plan names this frame's face
                return planned, content_cut or self._is_jump(planned)
        if self.face_index == "largest_each_frame":
            face = self._acquire(faces)
            return face, content_cut or (face is not None and self._is_jump(face))
        if self._target is None or content_cut or self._lost_for >= self.reacquire_after:
            face = self._acquire(faces)
        else:
            face = self._follow(faces, self._target)
        cut = content_cut or (face is not None and self._is_jump(face))
        return face, cut

    # ------------------------------------------------------------------------------------------- streaming
    def push(self, detections: Sequence[Sequence[Face]], signatures: np.ndarray | None = None) -> FaceTrack:
        """Add the next frames' detections (and optional :func:`frame_signatures`); returns the frames whose
        points are final: all of them except a trailing run without the face, which waits for the next
        found frame (or :meth:`finish`), and, for ``face_index >= 1``, the frames before the first one that
        shows enough faces (they are matched backwards from it once it arrives)."""
        if signatures is not None and len(signatures) != len(detections):
            raise ValueError(f"signatures has {len(signatures)} rows for {len(detections)} frames of detections.")
        rows: list[tuple[int, np.ndarray, np.ndarray, bool, bool]] = []  # index, points, box, found, reset
        for k, faces in enumerate(detections):
            index = self._next
            self._next += 1
            content_cut = False
            if signatures is not None:
                sig = np.asarray(signatures[k], np.float32)
                if self._prev_sig is not None:
                    content_cut = float(np.mean(np.abs(sig - self._prev_sig))) > self.cut_threshold
                self._prev_sig = sig
            faces = list(faces)
            if self._waiting_for_anchor():
                anchor = self._acquire(faces)
                if anchor is None:
                    self._unanchored.append((index, faces, content_cut))
                    continue
                rows.extend(self._replay_unanchored(anchor, content_cut))
            face, cut = self._choose(faces, content_cut, index)
            rows.extend(self._record(index, face, cut, content_cut))
        return self._emit(rows)

    def _waiting_for_anchor(self) -> bool:
        return self._target is None and self._last_found is None and isinstance(self.face_index, int)

    def _replay_unanchored(self, anchor: Face, anchor_cut: bool) -> list:
        """Frames seen before the anchor frame: follow the anchor face backwards (within the same shot)."""
        waiting, self._unanchored = self._unanchored, []
        matched: dict[int, Face] = {}
        prev, boundary_cut = anchor, anchor_cut
        for index, faces, content_cut in reversed(waiting):
            if boundary_cut:
                break
            found = self._follow(faces, prev)
            if found is not None:
                matched[index], prev = found, found
            boundary_cut = content_cut
        rows = []
        for index, faces, content_cut in waiting:
            face = matched.get(index)
            rows.extend(self._record(index, face, face is not None and self._is_jump(face), content_cut))
        return rows

    def _record(self, index: int, face: Face | None, cut: bool, content_cut: bool) -> list:
        """Book one frame's choice; returns the rows that became final."""
        if face is None:
            self._lost_for += 1
            self._pending.append(_Pending(index, content_cut))
            return []
        self._target, self._lost_for = face, 0
        pts = np.asarray(face.points3, np.float32)
        box = np.asarray(face.box, np.float32)
        cut = (cut or content_cut) and self._last_found is not None
        gap = self._fill_gap(pts, box, jumped=cut)
        gap_cut = any(r[4] for r in gap)
        self._last_found = (index, pts, box)
        return gap + [(index, pts, box, True, cut and not gap_cut)]

    def finish(self) -> FaceTrack:
        """Frames still waiting at the end: held at the last found face (or placeholders if none was found)."""
        for index, _faces, content_cut in self._unanchored:  # never enough faces for face_index
            self._pending.append(_Pending(index, content_cut))
        self._unanchored = []
        rows = []
        if self._last_found is not None:
            _, pts, box = self._last_found
        else:
            pts = default_points(self.frame_size)
            box = np.array([*pts[0] - 20, *pts[1] + 20], np.float32)
        for p in self._pending:
            rows.append((p.index, pts, box, False, False))
        self._pending = []
        return self._emit(rows)

    def _fill_gap(self, pts: np.ndarray, box: np.ndarray, jumped: bool) -> list:
        """Rows for the pending frames now that the face is found again at ``self._next - 1``.

        Linear interpolation between the two found frames; across a cut each side holds its own face
        (a content cut inside the gap resets there; a jump of the face resets at the found frame).
        """
        pending, self._pending = self._pending, []
        if not pending:
            return []
        now = self._next - 1
        if self._last_found is None:  # leading gap: hold the first found face
            return [(p.index, pts, box, False, False) for p in pending]
        start, p0, b0 = self._last_found
        cut_at = next((p.index for p in pending if p.reset), None)
        if cut_at is None and jumped:
            return [(p.index, p0, b0, False, False) for p in pending]
        rows = []
        for p in pending:
            if cut_at is not None:
                src_pts, src_box = (p0, b0) if p.index < cut_at else (pts, box)
                rows.append((p.index, src_pts, src_box, False, p.index == cut_at))
            else:
                t = (p.index - start) / (now - start)
                rows.append((p.index, (1 - t) * p0 + t * pts, (1 - t) * b0 + t * box, False, False))
        return rows

    def _emit(self, rows: list) -> FaceTrack:
        if not rows:
            return FaceTrack(
                np.zeros((0, 3, 2), np.float32),
                np.zeros(0, bool),
                np.zeros(0, bool),
                np.zeros((0, 4), np.float32),
                self.detector,
                self._next,
            )
        rows.sort(key=lambda r: r[0])
        return FaceTrack(
            points=np.stack([r[1] for r in rows]).astype(np.float32),
            found=np.array([r[3] for r in rows], bool),
            resets=np.array([r[4] for r in rows], bool),
            boxes=np.stack([r[2] for r in rows]).astype(np.float32),
            detector=self.detector,
            start=rows[0][0],
        )


def track_faces(
    detections: Sequence[Sequence[Face]],
    frame_size: tuple[int, int],
    *,
    face_index: FaceChoice = "largest",
    signatures: np.ndarray | None = None,
    detector: str = "",
    **options,
) -> FaceTrack:
    """Choose and follow one face through a whole video's detections -> :class:`FaceTrack` (see :class:`FaceTracker`).

    ``frame_size`` is ``(H, W)``; ``signatures`` (optional) are :func:`frame_signatures` of the frames, used
    to find shot cuts; ``options`` are :class:`FaceTracker` thresholds.
    """
    tracker = FaceTracker(frame_size=tuple(frame_size), face_index=face_index, detector=detector, **options)
    track = FaceTrack.concat([tracker.push(detections, signatures), tracker.finish()])
    if len(track) != len(detections):
        raise AssertionError("track_faces lost frames")  # internal invariant
    rep = track.report()
    if rep["missing"]:
        log.info(
            "Face not found in %d of %d frames (first: %s).", rep["missing"], rep["frames"], rep["missing_frames"][:10]
        )
    return track
