"""Step 2, 25 fps and 16 kHz (upstream's ``resample_fps_hz.py``): a 25 fps video keeps its video stream (``-c:v
copy``) and gets its audio resampled to 16 kHz; any other rate is re-encoded at 25 fps (``-r 25``: each output
frame shows the source frame nearest its time, frames are repeated or dropped), audio likewise 16 kHz."""

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
    """Re-time decoded batches (frames, pts seconds) to ``fps``: output frame k shows the source frame whose time
    is nearest ``k / fps`` (ties: the earlier); the output lasts as long as the source (last frame + its duration)."""
    k = 0
    first = prev = prev_t = None
    for batch, stamps in frames:
        for frame, t in zip(batch, stamps):
            t = float(t)
            first = t if first is None else first
            t -= first
            if prev is not None:
                boundary = (prev_t + t) / 2
                out = []
                while k / fps <= boundary:
                    out.append(prev)
                    k += 1
                if out:
                    yield np.stack(out)
            prev, prev_t = frame.copy(), t
    if prev is None:
        return
    end = prev_t + 1 / float(source_fps)
    total = max(int(round(end * fps)), 1)
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
