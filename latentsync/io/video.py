"""Public video I/O API (PyAV only, no system ffmpeg): probe, streaming decode, one-pass encode + mux."""

from __future__ import annotations

from .decode import DecodedVideo, iter_video_frames, read_video
from .encode import VideoWriter
from .errors import MediaError
from .probe import VideoInfo, probe_video
from .timing import as_fps, samples_for_frames

__all__ = [
    "DecodedVideo",
    "MediaError",
    "VideoInfo",
    "VideoWriter",
    "as_fps",
    "iter_video_frames",
    "probe_video",
    "read_video",
    "samples_for_frames",
]
