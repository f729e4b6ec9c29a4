"""Step 2, 25 fps and 16 kHz (upstream's ``resample_fps_hz.py``): a 25 fps video keeps its video stream (``-c:v
copy``) and gets its audio resampled to 16 kHz; any other rate is re-encoded at 25 fps (``-r 25``: frames are
repeated or dropped by the rule of :func:`..metrics.score.frames_at_25fps`, here on the frames' real timestamps),
audio likewise 16 kHz."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .files import FOLDERS, output_name, step_output
from .media import FPS, RESAMPLE_X264, SAMPLE_RATE, remux_with_audio, resample_audio
from .records import StepRecord, kept

STEP = "resample"


def frames_at_fps(frames: Iterator[tuple[np.ndarray, np.ndarray]], source_fps: Fraction,
                  fps: int = FPS) -> Iterator[np.ndarray]:
    """Re-time decoded batches (frames, pts seconds) to ``fps`` by ffmpeg's ``-r`` rule, the one of
    :func:`..metrics.score.frames_at_25fps`: each frame lands on the tick nearest its time (halves up), a tick shows
    the latest frame landed on or before it, and the output lasts as long as the source (last frame + 1/fps)."""
    k = 0
    first = prev = last_t = None
    for batch, stamps in frames:
        for frame, t in zip(batch, stamps):
            t = Fraction(float(t)).limit_denominator(1_000_000)
            first = t if first is None else first
            landing = int((t - first) * fps + Fraction(1, 2))  # floor: times are >= 0
            if prev is not None and k < landing:
                yield np.repeat(prev[None], landing - k, axis=0)
                k = landing
            prev, last_t = frame.copy(), t - first
    if prev is None:
        return
    total = max(1, int((last_t + 1 / Fraction(source_fps)) * fps + Fraction(1, 2)))
    if total > k:
        yield np.repeat(prev[None], total - k, axis=0)


def resample(src: Path, rel: Path, out: Path) -> StepRecord:
    """Write OUT/resampled/<rel>.mp4 at 25 fps with 16 kHz audio; the record has the new fps, rate and frames."""
    from ..audio.waveform import load_audio
    from ..io.decode import iter_video_frames
    from ..io.encode import VideoWriter
    from ..io.probe import probe_video

    path = src / rel
    dst = step_output(out, STEP, rel)
    dst.parent.mkdir(parents=True, exist_ok=True)
    info = probe_video(path)
    wave, rate = load_audio(path)
    wave16 = resample_audio(wave, rate)
    copied = info.fps == FPS and not info.is_vfr and info.rotation == 0
    if copied:
        remux_with_audio(path, dst, wave16, SAMPLE_RATE)
    else:
        with VideoWriter(dst, Fraction(FPS), audio=(wave16, SAMPLE_RATE), overwrite=True, **RESAMPLE_X264) as writer:
            for frames in frames_at_fps(iter_video_frames(path, batch=16), info.fps):
                writer.write(frames)
    done = probe_video(dst)
    return kept(STEP, rel.as_posix(), outputs=[f"{FOLDERS[STEP]}/{output_name(rel).as_posix()}"],
                source_fps=float(info.fps), fps=float(done.fps), frames=int(done.num_frames),
                sample_rate=int(done.audio_sample_rate or 0), video_copied=bool(copied))
