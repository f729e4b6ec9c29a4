"""Step 4, 5 s segments (upstream's ``segment_videos.py``: each shot cut by ffmpeg's segment muxer, ``-segment_time
5``, into ``<shot>_000.mp4``, ``<shot>_001.mp4`` ...). Upstream copies the stream, so its cuts fall on the next
keyframe after each 5 s mark; here every shot is cut at exactly 125 frames (the last piece holds the rest) and
encoded once with scenedetect's split-video settings (libx264 crf 22 veryfast, AAC). Names follow upstream's
two steps: ``<video>_shot_<NNN>_<MMM>.mp4``, shots counted from 001, segments from 000."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from .files import FOLDERS, output_name, step_output
from .media import FPS, SEGMENT_X264, audio_slice
from .records import StepRecord, kept

STEP = "segment"


def plan_segments(scenes: list[list[int]] | list[tuple[int, int]], length: int) -> list[tuple[int, int, int, int]]:
    """(shot number from 1, segment number from 0, first frame, stop frame) of every segment of every scene."""
    plan = []
    for shot, (a, b) in enumerate(scenes, start=1):
        for n, start in enumerate(range(a, b, length)):
            plan.append((shot, n, start, min(start + length, b)))
    return plan


def segment_name(rel: Path, shot: int, number: int) -> Path:
    """``<dir>/<stem>_shot_<shot:03d>_<number:03d>.mp4`` relative to the step folders."""
    rel = output_name(rel)
    return rel.with_name(f"{rel.stem}_shot_{shot:03d}_{number:03d}.mp4")


def write_segments(out: Path, rel: Path, scenes: list[list[int]], seconds: float = 5.0) -> StepRecord:
    """Write every segment of the resampled video; the record lists them (relative names, frame ranges)."""
    from ..audio.waveform import load_audio
    from ..io.decode import iter_video_frames
    from ..io.encode import VideoWriter

    source = step_output(out, "resample", rel)
    wave, rate = load_audio(source)
    plan = plan_segments(scenes, max(1, int(round(seconds * FPS))))
    names = [segment_name(rel, shot, n) for shot, n, _, _ in plan]
    index, writer = 0, None
    position = 0
    for frames, _ in iter_video_frames(source, batch=25):
        at = 0
        while at < len(frames) and index < len(plan):
            _, _, start, stop = plan[index]
            frame_no = position + at
            if frame_no < start:
                at += min(start - frame_no, len(frames) - at)
                continue
            if writer is None:
                dst = out / FOLDERS[STEP] / names[index]
                dst.parent.mkdir(parents=True, exist_ok=True)
                writer = VideoWriter(dst, Fraction(FPS), audio=(audio_slice(wave, rate, start, stop), rate),
                                     overwrite=True, **SEGMENT_X264)
            take = min(stop - frame_no, len(frames) - at)
            writer.write(frames[at:at + take])
            at += take
            if frame_no + take >= stop:
                writer.close()
                writer, index = None, index + 1
        position += len(frames)
        if index >= len(plan):
            break
    if writer is not None:  # the video ended before the scene list's last frame: that segment is incomplete
        writer.abort()
    plan, names = plan[:index], names[:index]
    record = kept(STEP, rel.as_posix(), outputs=[f"{FOLDERS[STEP]}/{n.as_posix()}" for n in names],
                  segments=len(names), frames=[b - a for _, _, a, b in plan])
    record.data = {"segments": [{"name": n.as_posix(), "shot": s, "start": a, "stop": b}
                                for n, (s, _, a, b) in zip(names, plan)]}
    return record
