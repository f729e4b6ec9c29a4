"""Step 6, the SyncNet filter (upstream's ``sync_av.py``): the aligned clip is scored as ``eval_sync_conf.py``
scores a video (S3FD face tracks of at least ``min_track`` frames, SyncNet v2 over every track, confidence and
offset averaged); it is kept when the confidence is at least ``min_sync`` (3) and ``|offset|`` at most
``max_offset`` (6) frames, and then its audio is shifted by the offset (:mod:`..metrics.offset`, sample-exact;
upstream: ``ffmpeg -itsoffset offset/25``). An offset of 0 copies the file; otherwise the video stream is copied
and only the audio re-encoded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import FOLDERS, copy_atomic, output_name, step_output
from .media import FPS, remux_with_audio
from .records import StepRecord, dropped, kept

STEP = "sync"


def _number(value: float) -> float | None:
    return None if value != value else round(float(value), 4)


def sync_filter(out: Path, rel: Path, models: Any, min_sync: float = 3.0, max_offset: int = 6,
                min_track: int = 50) -> StepRecord:
    """Score one aligned segment; keep it (audio offset corrected) in OUT/av_synced/<rel> or drop it with why."""
    from ..audio.waveform import load_audio
    from ..io.decode import read_video
    from ..metrics.offset import fix_offset
    from ..metrics.score import SyncOptions

    item = rel.as_posix()
    source = step_output(out, "faces", rel)
    frames = read_video(source).frames
    wave, rate = load_audio(source)
    shifted, fix = fix_offset(frames, wave, rate, FPS, models, SyncOptions(min_track=min_track),
                              min_confidence=min_sync, max_offset=max_offset)
    score = fix.score
    scores = {"sync_confidence": _number(score.confidence), "sync_distance": _number(score.distance),
              "sync_offset": int(score.offset), "face_tracks": len(score.tracks)}
    if not score.scorable:
        return dropped(STEP, item, f"not scorable: {score.reason}", **scores)
    if score.confidence < min_sync:
        return dropped(STEP, item, f"SyncNet confidence {score.confidence:.2f} < {min_sync:g}", **scores)
    if abs(score.offset) > max_offset:
        return dropped(STEP, item, f"|offset| {abs(score.offset)} > {max_offset} frames", **scores)
    dst = step_output(out, STEP, rel)
    if fix.applied:
        remux_with_audio(source, dst, shifted, rate)
    else:
        copy_atomic(source, dst)
    return kept(STEP, item, outputs=[f"{FOLDERS[STEP]}/{output_name(rel).as_posix()}"], audio_shift_frames=fix.frames,
                audio_shift_samples=fix.samples, **scores)
