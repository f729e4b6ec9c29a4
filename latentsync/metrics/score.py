"""Sync scores of a clip: the library entry points behind the Sync Score node (and later the gate and the CLI).

* :func:`score_clip` — frames at any fps + 16 kHz audio -> :class:`SyncScore` (resampled to 25 fps; checks for a
  clip too short, silent audio or no face give ``scorable=False`` with a reason, never an exception).
* :func:`score_frames` — full frames at 25 fps: S3FD faces, cuts, tracks, crops, SyncNet (upstream's
  ``eval_sync_conf.py``: every track scored, confidence and offset averaged over tracks).
* :func:`score_crops` — frames that already are face crops (resized to 224 and scored as one track).
* :func:`rank_tracks` / :func:`speaking_track` — given candidate face tracks, which one moves with the speech.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..audio.silence import LOUD_QUANTILE, block_levels_db
from ..face.resize import linear_u8
from . import faces, scenes
from .crops import CROP_SIZE, crop_faces, crop_geometry, crop_regions
from .s3fd import S3FD
from .sync import FPS, SAMPLES_PER_FRAME, VSHIFT, SyncResult, mean_result, min_frames, score_track
from .syncnet_v2 import LIP_FRAMES, SyncNetV2
from .tracks import MIN_FACE_SIZE, MIN_TRACK, FaceTrack, scene_tracks

SILENCE_DBFS = -50.0  # loudest 10 ms blocks (99th percentile) below this: no speech to score

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class SyncModels:
    """The networks a score needs: SyncNet v2, and S3FD unless the frames are face crops already."""

    syncnet: SyncNetV2
    s3fd: Optional[S3FD] = None


@dataclass
class SyncOptions:
    """Upstream's evaluation settings (``eval_sync_conf.py``, ``syncnet_detect.py``)."""

    vshift: int = VSHIFT
    min_track: int = MIN_TRACK
    min_face_size: float = MIN_FACE_SIZE
    detect_scale: float = faces.SCALE
    conf_th: float = faces.CONF_TH
    batch: int = 20  # SyncNet windows per forward (upstream's batch size)
    detect_batch: int = 8  # frames per S3FD forward


@dataclass
class TrackScore:
    """One scored face track: its frames (25 fps) and boxes, and the SyncNet result."""

    track: FaceTrack
    result: SyncResult


@dataclass
class SyncScore:
    """Result of scoring a clip. ``confidence``/``distance``/``offset`` are NaN/NaN/0 when not scorable."""

    scorable: bool
    reason: str
    confidence: float = math.nan
    distance: float = math.nan
    offset: int = 0
    tracks: list[TrackScore] = field(default_factory=list)
    num_frames: int = 0  # frames at 25 fps
    faces_found: int = 0  # frames (25 fps) with at least one S3FD face
    source_fps: float = float(FPS)

    @property
    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-window confidence over time: (seconds at each window's centre, confidence), all tracks."""
        times, values = [], []
        for ts in self.tracks:
            conf = ts.result.window_confidence.numpy()
            start = ts.track.start
            times.append((start + np.arange(conf.shape[0]) + LIP_FRAMES / 2) / FPS)
            values.append(conf)
        if not times:
            return np.zeros(0), np.zeros(0)
        t, v = np.concatenate(times), np.concatenate(values)
        order = np.argsort(t, kind="stable")
        return t[order], v[order].astype(np.float64)

    def per_second(self) -> list[dict]:
        """The curve in one-second bins: ``{"second": s, "confidence": mean or None, "windows": n}`` for every
        second of the clip (None where no window is centred in it)."""
        times, values = self.curve
        seconds = max(1, math.ceil(self.num_frames / FPS))
        out = []
        for s in range(seconds):
            inside = values[(times >= s) & (times < s + 1)]
            out.append({"second": s, "confidence": float(inside.mean()) if inside.size else None,
                        "windows": int(inside.size)})
        return out

    def as_dict(self) -> dict:
        """JSON-ready summary: scores (None when not scorable), reason, tracks used, per-second curve."""
        def number(x: float) -> Optional[float]:
            return float(x) if math.isfinite(x) else None

        return {
            "scorable": self.scorable, "reason": self.reason or None, "report": self.report(),
            "confidence": number(self.confidence), "distance": number(self.distance),
            "offset": int(self.offset), "frames_25fps": int(self.num_frames), "source_fps": float(self.source_fps),
            "faces_found": int(self.faces_found),
            "tracks": [{"first_frame": ts.track.start, "last_frame": int(ts.track.frames[-1]),
                        "box_median": [round(float(v), 1) for v in np.median(ts.track.boxes, axis=0)],
                        "confidence": float(ts.result.confidence), "distance": float(ts.result.distance),
                        "offset": int(ts.result.offset)} for ts in self.tracks],
            "per_second": self.per_second() if self.scorable else [],
        }

    def report(self) -> str:
        """One line for people: the scores, or why there are none."""
        if not self.scorable:
            return f"not scorable: {self.reason}"
        seconds = self.num_frames / FPS
        return (f"SyncNet confidence {self.confidence:.2f}, distance {self.distance:.2f}, offset {self.offset:+d} "
                f"frames ({len(self.tracks)} face track{'s' if len(self.tracks) != 1 else ''}, {seconds:.1f} s at 25 fps)")


def unscorable(reason: str, **kwargs) -> SyncScore:
    """A :class:`SyncScore` that says why the clip cannot be scored."""
    return SyncScore(scorable=False, reason=reason, **kwargs)


def frames_at_25fps(num_frames: int, fps: float | Fraction) -> np.ndarray:
    """Source frame shown at each 25 fps tick (as ``ffmpeg -r 25``: the latest frame whose timestamp, rounded to
    the 25 fps grid, is not after the tick); ``round(num_frames * 25 / fps)`` ticks."""
    ratio = Fraction(FPS) / Fraction(fps).limit_denominator(1_000_000)
    if ratio == 1:
        return np.arange(num_frames)
    ticks = max(1, int(math.floor(num_frames * ratio + Fraction(1, 2))))
    landing = np.array([int(math.floor(i * ratio + Fraction(1, 2))) for i in range(num_frames)])
    return np.clip(np.searchsorted(landing, np.arange(ticks), side="right") - 1, 0, num_frames - 1)


def as_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Frames as uint8 RGB (n, H, W, 3): uint8 passes through; float 0..1 (ComfyUI IMAGE) is rounded; alpha
    dropped, grey repeated."""
    x = frames
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    x = x[..., :3]
    if x.dtype == torch.uint8:
        return x
    return (x.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def silence_problem(wav16k: torch.Tensor) -> Optional[str]:
    """A reason when the audio holds no sound loud enough to be speech, else None."""
    levels = block_levels_db(wav16k.float())
    loud = float(torch.quantile(levels, LOUD_QUANTILE)) if levels.numel() > 1 else float(levels.max())
    if loud < SILENCE_DBFS:
        return (f"the audio is silent (its loud level is {loud:.0f} dBFS, below {SILENCE_DBFS:.0f}); "
                "SyncNet needs speech to compare the lips with")
    return None


def _check_inputs(frames: torch.Tensor, wav16k: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] not in (1, 3, 4):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a (frames, height, width, channels) tensor, got {shape}.")
    if not isinstance(wav16k, torch.Tensor) or wav16k.dim() != 1:
        raise ValueError("audio must be a 1-D 16 kHz mono waveform tensor; convert it with to_16k_mono first.")


def clip_problem(num_frames: int, wav16k: torch.Tensor, vshift: int = VSHIFT) -> Optional[str]:
    """Why a clip of ``num_frames`` (25 fps) and this audio cannot be scored (too short, silent), else None."""
    return _length_problem(num_frames, int(wav16k.shape[-1]), vshift) or silence_problem(wav16k)


def _length_problem(num_frames: int, num_samples: int, vshift: int) -> Optional[str]:
    need = min_frames(vshift)
    usable = min(num_frames, num_samples // SAMPLES_PER_FRAME)
    if usable < need:
        what = "video" if num_frames <= num_samples // SAMPLES_PER_FRAME else "audio"
        return (f"the clip is too short: {usable} frames at 25 fps ({usable / FPS:.2f} s, limited by the {what}); "
                f"SyncNet needs at least {need} ({LIP_FRAMES}-frame windows and offsets of +-{vshift} frames)")
    return None


def _track_audio(wav16k: torch.Tensor, track: FaceTrack) -> torch.Tensor:
    """The samples of a track's frames (upstream cuts them from ``frame / 25`` to ``(last + 1) / 25`` s)."""
    return wav16k[track.start * SAMPLES_PER_FRAME:(int(track.frames[-1]) + 1) * SAMPLES_PER_FRAME]


def _summary(results: list[TrackScore], **kwargs) -> SyncScore:
    offset, confidence, distance = mean_result([r.result for r in results])
    return SyncScore(scorable=True, reason="", confidence=confidence, distance=distance, offset=offset,
                     tracks=results, **kwargs)


def score_track_frames(syncnet: SyncNetV2, frames: Callable[[np.ndarray], torch.Tensor], track: FaceTrack,
                       frame_hw: tuple[int, int], wav16k: torch.Tensor, options: SyncOptions,
                       progress: Optional[Callable[[int], None]] = None) -> Optional[SyncResult]:
    """Score one face track of full frames: crops cut batch by batch (``frames(indices)`` gives uint8 RGB)."""
    regions = crop_regions(*crop_geometry(track), frame_hw)

    def crops(start: int, stop: int) -> torch.Tensor:
        return crop_faces(frames(track.frames[start:stop]), regions[start:stop])

    return score_track(syncnet, crops, len(track), _track_audio(wav16k, track), vshift=options.vshift,
                       start_frame=track.start, batch=options.batch, progress=progress)


@torch.no_grad()
def score_frames(frames: torch.Tensor, wav16k: torch.Tensor, models: SyncModels,
                 options: Optional[SyncOptions] = None, *, index: Optional[np.ndarray] = None,
                 detections: Optional[list[np.ndarray]] = None, cuts: Optional[Sequence[int]] = None,
                 progress: Optional[Progress] = None, source_fps: float = float(FPS)) -> SyncScore:
    """Score full frames at 25 fps (``frames[index]`` when an index map is given): faces found with S3FD, or
    given as ``detections`` (per 25 fps frame an ``(n, >=4)`` array of ``x1, y1, x2, y2`` boxes); shot cuts
    found by upstream's content detector, or given as ``cuts`` (25 fps positions that start a shot)."""
    options = options or SyncOptions()
    if models.s3fd is None and detections is None:
        raise ValueError("score_frames needs the S3FD face detector (SyncModels.s3fd); load sfd_face.pth.")
    index = np.arange(frames.shape[0]) if index is None else np.asarray(index)
    count = len(index)
    frame_hw = (int(frames.shape[1]), int(frames.shape[2]))
    device = next((models.s3fd if models.s3fd is not None else models.syncnet).parameters()).device
    if detections is not None and len(detections) != count:
        raise ValueError(f"score_frames: {len(detections)} detection lists for {count} frames (25 fps).")
    problem = clip_problem(count, wav16k, options.vshift)
    if problem:
        return unscorable(problem, num_frames=count, source_fps=source_fps)
    if detections is None and not faces.frames_fit(*frame_hw, options.detect_scale):
        return unscorable(f"the frames ({frame_hw[1]}x{frame_hw[0]}) are too small for the S3FD face detector at "
                          f"scale {options.detect_scale:g} (about 112 px a side at least); turn face detection off "
                          "when the frames are face crops", num_frames=count, source_fps=source_fps)

    def get(ids: np.ndarray) -> torch.Tensor:
        return as_uint8(frames[torch.as_tensor(index[ids], dtype=torch.long)]).to(device)

    finder = "S3FD" if detections is None else "the face tracker"
    total = 2 * count
    found_boxes: list[np.ndarray] = []
    score_parts, previous = [], None
    scan = detections is None or cuts is None  # one pass over the frames for whichever is not given
    for start in range(0, count, options.detect_batch) if scan else ():
        batch = get(np.arange(start, min(count, start + options.detect_batch)))
        if detections is None:
            found_boxes += faces.detect_faces(models.s3fd, batch, scale=options.detect_scale, conf_th=options.conf_th)
        if cuts is None:
            part, previous = scenes.content_scores(batch, previous)
            score_parts.append(part)
        if progress is not None:
            progress(start + batch.shape[0], total)
    detections = found_boxes if detections is None else [np.asarray(d, dtype=np.float64) for d in detections]
    found = sum(1 for d in detections if len(d))
    if cuts is None:
        cuts = scenes.detect_cuts(torch.cat(score_parts))
    else:
        cuts = sorted({int(c) for c in cuts if 0 < int(c) < count})
    tracks = scene_tracks(detections, scenes.scene_ranges(count, cuts), min_track=options.min_track,
                          min_face_size=options.min_face_size)
    info = dict(num_frames=count, faces_found=found, source_fps=source_fps)
    if not tracks:
        return unscorable(
            f"no face track: {finder} found a face in {found} of {count} frames; a track needs more than "
            f"{options.min_track} detections of one face (mean size over {options.min_face_size:g} px) within one "
            "shot (lower min_track for short clips)", **info)
    done = [count]

    def step(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(min(done[0], total), total)

    results = []
    for track in tracks:
        result = score_track_frames(models.syncnet, get, track, frame_hw, wav16k, options, step)
        if result is not None:
            results.append(TrackScore(track, result))
    if not results:
        return unscorable("the face tracks are shorter than the audio allows to score (no complete window)", **info)
    return _summary(results, **info)


@torch.no_grad()
def score_crops(crops: torch.Tensor, wav16k: torch.Tensor, syncnet: SyncNetV2,
                options: Optional[SyncOptions] = None, *, index: Optional[np.ndarray] = None,
                progress: Optional[Progress] = None, source_fps: float = float(FPS)) -> SyncScore:
    """Score frames that already are face crops (any size, resized to 224 x 224 like upstream's reader) as one
    track starting at frame 0."""
    options = options or SyncOptions()
    index = np.arange(crops.shape[0]) if index is None else np.asarray(index)
    count = len(index)
    device = next(syncnet.parameters()).device
    problem = clip_problem(count, wav16k, options.vshift)
    if problem:
        return unscorable(problem, num_frames=count, source_fps=source_fps)

    def source(start: int, stop: int) -> torch.Tensor:
        batch = as_uint8(crops[torch.as_tensor(index[start:stop], dtype=torch.long)]).to(device)
        return linear_u8(batch, (CROP_SIZE, CROP_SIZE))

    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], count)

    track = FaceTrack(np.arange(count), np.zeros((count, 4)))
    result = score_track(syncnet, source, count, wav16k, vshift=options.vshift, batch=options.batch, progress=step)
    if result is None:
        return unscorable("the clip is too short for one SyncNet window", num_frames=count, source_fps=source_fps)
    return _summary([TrackScore(track, result)], num_frames=count, faces_found=count, source_fps=source_fps)


def score_clip(frames: torch.Tensor, wav16k: torch.Tensor, fps: float | Fraction, models: SyncModels,
               options: Optional[SyncOptions] = None, *, detect: bool = True,
               boxes: Optional[Sequence[np.ndarray]] = None, cuts: Optional[Sequence[int]] = None,
               progress: Optional[Progress] = None) -> SyncScore:
    """Score any clip: frames (n, H, W, C) uint8 or float 0..1 at ``fps``, audio 16 kHz mono (int16 grid)
    starting with the first frame. Bad clips come back with ``scorable=False`` and the reason.

    ``boxes`` (one ``(k, >=4)`` array of ``x1, y1, x2, y2`` per frame, empty where no face) replaces S3FD when the
    caller already knows the faces: the sync gate passes the pipeline's own tracked boxes. ``cuts`` (frame indices
    that start a shot) replaces the scan for shot cuts the same way; the gate passes the pipeline's own."""
    options = options or SyncOptions()
    _check_inputs(frames, wav16k)
    fps_value = float(fps)
    if not math.isfinite(fps_value) or fps_value <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}; connect the video's frame rate.")
    index = frames_at_25fps(int(frames.shape[0]), fps)
    info = dict(num_frames=len(index), source_fps=fps_value)
    problem = clip_problem(len(index), wav16k, options.vshift)
    if problem:
        return unscorable(problem, **info)
    at_25 = None if cuts is None else [int(np.searchsorted(index, c)) for c in cuts]  # the first frame from it on
    if boxes is not None:
        if len(boxes) != frames.shape[0]:
            raise ValueError(f"score_clip: {len(boxes)} box arrays for {frames.shape[0]} frames; give one per frame.")
        return score_frames(frames, wav16k, models, options, index=index, detections=[boxes[i] for i in index],
                            cuts=at_25, progress=progress, source_fps=fps_value)
    if detect:
        return score_frames(frames, wav16k, models, options, index=index, cuts=at_25, progress=progress,
                            source_fps=fps_value)
    return score_crops(frames, wav16k, models.syncnet, options, index=index, progress=progress, source_fps=fps_value)


@torch.no_grad()
def rank_tracks(frames: torch.Tensor, wav16k: torch.Tensor, syncnet: SyncNetV2, tracks: Sequence[FaceTrack],
                options: Optional[SyncOptions] = None, *, index: Optional[np.ndarray] = None) -> list[Optional[SyncResult]]:
    """SyncNet result of each candidate face track (frames at 25 fps; None where a track is too short)."""
    options = options or SyncOptions()
    index = np.arange(frames.shape[0]) if index is None else np.asarray(index)
    device = next(syncnet.parameters()).device
    frame_hw = (int(frames.shape[1]), int(frames.shape[2]))

    def get(ids: np.ndarray) -> torch.Tensor:
        return as_uint8(frames[torch.as_tensor(index[ids], dtype=torch.long)]).to(device)

    return [score_track_frames(syncnet, get, t, frame_hw, wav16k, options) for t in tracks]


def speaking_track(results: Sequence[Optional[SyncResult]]) -> Optional[int]:
    """Index of the track that moves with the speech (highest confidence), None when none could be scored."""
    scored = [(r.confidence, i) for i, r in enumerate(results) if r is not None]
    return max(scored)[1] if scored else None
