"""The speaker by sync (``face_index = "speaker"``): per shot, the face whose mouth moves with the speech.

The clip goes through upstream's evaluation chain (:mod:`.score`): S3FD faces at 25 fps, PySceneDetect-style
shots, face tracks per shot, and SyncNet v2 on every track (:func:`.score.rank_tracks`). In each shot the track
with the highest confidence is the speaker (:func:`.score.speaking_track`); a shot with no scorable track (too
short, no face, silent speech) has no choice and the face tracker falls back to the largest face there. The
result is a :class:`SpeakerPlan`: per source frame the speaker's box, which :class:`latentsync.face.track.
FaceTracker` accepts as ``face_index`` and follows with any face detector (the detected face nearest the planned
box is taken).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np
import torch

from ..configs import AUDIO_SAMPLE_RATE
from . import faces, scenes
from .s3fd import S3FD
from .score import SyncOptions, as_uint8, clip_problem, frames_at_25fps, rank_tracks, speaking_track
from .sync import SAMPLES_PER_FRAME
from .syncnet_v2 import SyncNetV2
from .tracks import scene_tracks

SPEAKER_MIN_TRACK = 24  # a candidate needs more than this many detections in its shot (about 1 s at 25 fps)
MAX_JUMP = 1.0  # a detected face is the planned one when its centre is within this many box sides of the plan's


@dataclass
class ShotChoice:
    """One shot (source frames ``start .. stop-1``): its candidate faces and the one chosen (None: no choice)."""

    start: int
    stop: int
    chosen: Optional[int]
    candidates: list[dict] = field(default_factory=list)  # box (median), frames, confidence (None: not scorable)
    reason: str = ""

    def report(self) -> str:
        """One line: which face speaks in this shot, or why none was chosen."""
        span = f"frames {self.start}-{self.stop - 1}"
        if self.chosen is None:
            return f"{span}: no speaker chosen ({self.reason}); the largest face is used"
        c = self.candidates[self.chosen]
        others = ", ".join(f"{x['confidence']:.2f}" for i, x in enumerate(self.candidates)
                           if i != self.chosen and x["confidence"] is not None)
        return (f"{span}: face {self.chosen} of {len(self.candidates)} at {c['box']} speaks (confidence "
                f"{c['confidence']:.2f}{'; others ' + others if others else ''})")

    def as_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop, "chosen": self.chosen, "candidates": self.candidates,
                "reason": self.reason or None}


@dataclass
class SpeakerPlan:
    """The speaker's box per source frame (x1, y1, x2, y2, in the frames' pixels) and the per-shot choices."""

    boxes: dict[int, np.ndarray]
    shots: list[ShotChoice]

    def pick(self, frame: int, detected: Sequence) -> Optional[object]:
        """The detected face (anything with a ``box``) that is the planned speaker in ``frame``, or None when the
        plan has no box there or no face is near it."""
        box = self.boxes.get(int(frame))
        if box is None or not detected:
            return None
        centre = (box[:2] + box[2:]) / 2
        side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
        dists = [float(np.linalg.norm((np.asarray(f.box[:2], np.float64) + np.asarray(f.box[2:4], np.float64)) / 2
                                      - centre)) / side for f in detected]
        best = int(np.argmin(dists))
        return detected[best] if dists[best] <= MAX_JUMP else None

    def starts_shot(self, frame: int) -> bool:
        """Whether a shot starts at this source frame (the tracker re-chooses there)."""
        return any(s.start == int(frame) for s in self.shots)

    def report(self) -> list[str]:
        """One line per shot."""
        return [s.report() for s in self.shots]

    def as_dict(self) -> dict:
        return {"shots": [s.as_dict() for s in self.shots], "frames_with_speaker": len(self.boxes)}

    def shifted(self, offset: int, scale: float = 1.0) -> "SpeakerPlan":
        """The plan for frames numbered ``offset`` later, boxes multiplied by ``scale`` (a plan made on a segment
        or on downscaled frames)."""
        shots = [ShotChoice(s.start + offset, s.stop + offset, s.chosen, s.candidates, s.reason) for s in self.shots]
        return SpeakerPlan({k + offset: v * scale for k, v in self.boxes.items()}, shots)

    @staticmethod
    def merge(plans: Sequence["SpeakerPlan"]) -> "SpeakerPlan":
        boxes: dict[int, np.ndarray] = {}
        shots: list[ShotChoice] = []
        for p in plans:
            boxes.update(p.boxes)
            shots += p.shots
        return SpeakerPlan(boxes, shots)


@torch.no_grad()
def choose_speakers(frames: torch.Tensor, wav16k: torch.Tensor, fps: float | Fraction, syncnet: SyncNetV2,
                    s3fd: Optional[S3FD] = None, options: Optional[SyncOptions] = None, *,
                    detections: Optional[list[np.ndarray]] = None) -> SpeakerPlan:
    """Per shot, the face track that moves with the speech: frames (n, H, W, C) at ``fps`` with their 16 kHz
    audio; S3FD finds the faces unless ``detections`` (per 25 fps frame, ``(k, >=4)`` boxes) are given."""
    options = options or SyncOptions(min_track=SPEAKER_MIN_TRACK)
    if s3fd is None and detections is None:
        raise ValueError("choose_speakers needs the S3FD face detector or detections.")
    n = int(frames.shape[0])
    index = frames_at_25fps(n, fps)
    count = len(index)
    frame_hw = (int(frames.shape[1]), int(frames.shape[2]))
    device = next((s3fd if s3fd is not None else syncnet).parameters()).device
    if detections is None and not faces.frames_fit(*frame_hw, options.detect_scale):
        reason = (f"the frames ({frame_hw[1]}x{frame_hw[0]}) are too small for S3FD at scale "
                  f"{options.detect_scale:g}")
        return SpeakerPlan({}, [ShotChoice(0, n, None, [], reason)])
    found, parts, previous = [], [], None
    for start in range(0, count, options.detect_batch):
        ids = torch.as_tensor(index[start:start + options.detect_batch], dtype=torch.long)
        batch = as_uint8(frames[ids]).to(device)
        if detections is None:
            found += faces.detect_faces(s3fd, batch, scale=options.detect_scale, conf_th=options.conf_th)
        part, previous = scenes.content_scores(batch, previous)
        parts.append(part)
    detections = found if detections is None else [np.asarray(d, np.float64) for d in detections]
    ranges = scenes.scene_ranges(count, scenes.detect_cuts(torch.cat(parts))) if parts else []
    tracks = scene_tracks(detections, ranges, min_track=options.min_track, min_face_size=options.min_face_size)
    results = rank_tracks(frames, wav16k, syncnet, tracks, options, index=index)
    # the 25 fps tick showing each source frame (the latest tick at or before it when the rate drops frames)
    tick_of_source = np.clip(np.searchsorted(index, np.arange(n), side="right") - 1, 0, max(count - 1, 0))
    boxes: dict[int, np.ndarray] = {}
    shots = []
    for a, b in ranges:
        members = [i for i, t in enumerate(tracks) if a <= t.start < b]
        start = int(index[a])
        stop = n if (a, b) == ranges[-1] else int(index[b])  # the last shot runs to the end
        cands = [{"box": [round(float(v), 1) for v in np.median(tracks[i].boxes, axis=0)],
                  "frames": [int(tracks[i].frames[0]), int(tracks[i].frames[-1])],
                  "confidence": None if results[i] is None else float(results[i].confidence)} for i in members]
        audio = wav16k[a * SAMPLES_PER_FRAME:b * SAMPLES_PER_FRAME]
        problem = clip_problem(b - a, audio, options.vshift) if members else (
            f"no face track of more than {options.min_track} detections")
        chosen = None if problem else speaking_track([results[i] for i in members])
        if chosen is None and not problem:
            problem = "no candidate could be scored"
        shot = ShotChoice(start, max(stop, start), chosen, cands, problem or "")
        shots.append(shot)
        if chosen is not None:
            track = tracks[members[chosen]]
            first, last = int(track.frames[0]), int(track.frames[-1])  # tracks are contiguous (interpolated)
            for j in range(shot.start, shot.stop):  # before / after the track within its shot: held
                tick = min(max(int(tick_of_source[j]), first), last)
                boxes[j] = np.asarray(track.boxes[tick - first][:4], np.float64)
    return SpeakerPlan(boxes, shots)


def plan_for_file(video: str, audio: Optional[str], syncnet: SyncNetV2, s3fd: S3FD, *,
                  options: Optional[SyncOptions] = None, segment_seconds: float = 30.0,
                  max_side: int = 1280) -> SpeakerPlan:
    """:func:`choose_speakers` over a video file in segments of ``segment_seconds`` (bounded memory; a shot
    crossing a segment boundary is chosen per segment), frames downscaled to ``max_side`` for the analysis (the
    detector's scale and the minimum face size follow, and the plan's boxes are scaled back)."""
    from ..audio.waveform import load_16k_mono
    from ..face.resize import linear_u8
    from ..io.decode import iter_video_frames
    from ..io.probe import probe_video

    options = options or SyncOptions(min_track=SPEAKER_MIN_TRACK)
    info = probe_video(video, exact=False)
    wav = load_16k_mono(audio if audio is not None else video)
    fps = info.fps
    factor = min(1.0, max_side / max(info.width, info.height))
    small_side = min(info.width, info.height) * factor  # S3FD sees at least 128 px of it (small videos)
    scaled = replace(options, detect_scale=min(1.0, max(options.detect_scale / factor, 128.0 / small_side)),
                     min_face_size=options.min_face_size * factor)
    size = (max(1, round(info.height * factor)), max(1, round(info.width * factor)))
    per_segment = max(1, int(segment_seconds * float(fps)))
    plans, offset = [], 0
    for frames, _ in iter_video_frames(video, batch=per_segment):
        batch = torch.from_numpy(frames)
        if factor < 1.0:
            batch = linear_u8(batch, size)
        first = int(round(offset / float(fps) * AUDIO_SAMPLE_RATE))
        seg_audio = wav[first:first + int(math.ceil(batch.shape[0] / float(fps) * AUDIO_SAMPLE_RATE))]
        if seg_audio.numel() == 0:  # the audio ended: the shots are not scorable (too short)
            seg_audio = torch.zeros(1)
        plan = choose_speakers(batch, seg_audio, fps, syncnet, s3fd, scaled)
        plans.append(plan.shifted(offset, 1.0 / factor))
        offset += int(batch.shape[0])
    return SpeakerPlan.merge(plans)
