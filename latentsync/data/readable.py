"""Step 1, drop unreadable files (upstream's ``remove_broken_videos.py``: a file decord's AVReader cannot open,
video and audio, is removed). Here nothing in SRC is touched: the input is recorded as dropped with the reason."""

from __future__ import annotations

from pathlib import Path

from .records import StepRecord, dropped, kept

STEP = "readable"


def check_readable(src: Path, rel: Path) -> StepRecord:
    """Kept when the video opens, its first frame decodes and it has an audio track that decodes."""
    from ..audio.waveform import load_audio
    from ..io.errors import MediaError
    from ..io.probe import probe_video

    item = rel.as_posix()
    path = src / rel
    try:
        info = probe_video(path, exact=False)
    except (MediaError, OSError, ValueError) as exc:
        return dropped(STEP, item, f"unreadable video: {exc}")
    if not info.has_audio:
        return dropped(STEP, item, "no audio track (upstream's AVReader needs one)")
    try:
        wave, rate = load_audio(path)
    except (OSError, ValueError) as exc:
        return dropped(STEP, item, f"unreadable audio: {exc}")
    return kept(STEP, item, fps=float(info.fps), frames=int(info.num_frames), width=int(info.width),
                height=int(info.height), duration=round(float(info.duration), 3), sample_rate=int(rate),
                audio_seconds=round(wave.shape[1] / rate, 3))
