"""Cheap checks of a job's input files before any model loads: their headers only, no decoding.

A file that cannot be opened, holds no video or audio stream, or promises frames or audio beyond the limits of
:mod:`latentsync.limits` is refused here, with a message that names it and the fix, instead of minutes later.
"""

from __future__ import annotations

import os
from typing import Optional


def _exists_problem(path: str, what: str) -> Optional[str]:
    if os.path.isdir(path):
        return f"the {what} input is a folder, not a file: {path}"
    if not os.path.isfile(path):
        return f"{what} file not found: {path}"
    if os.path.getsize(path) == 0:
        return f"the {what} file is empty (0 bytes): {path}. Give the complete file."
    return None


def video_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be the video (or still image) input, from its header; None when it looks usable."""
    from .io.errors import MediaError
    from .io.image import is_image_path, probe_image
    from .io.probe import probe_video

    problem = _exists_problem(path, "video")
    if problem:
        return problem
    try:
        if is_image_path(path):
            probe_image(path)
        else:
            probe_video(path, exact=False)
    except MediaError as exc:
        return str(exc)
    return None


def audio_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be the audio input (no track, too many channels, too long), or None."""
    from .audio.waveform import check_audio_file

    problem = _exists_problem(path, "audio")
    if problem:
        return problem
    try:
        check_audio_file(path)
    except ValueError as exc:
        return str(exc)
    return None


def inputs_problem(video: str, audio: str) -> Optional[str]:
    """The first problem of a video/audio pair, or None."""
    return video_problem(video) or audio_problem(audio)
