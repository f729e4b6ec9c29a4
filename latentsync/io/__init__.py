"""Media I/O: video decode/encode and audio muxing through PyAV (see video.py for the public API)."""

from .video import (
    DecodedVideo,
    MediaError,
    VideoInfo,
    VideoWriter,
    as_fps,
    iter_video_frames,
    probe_video,
    read_video,
    samples_for_frames,
)

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
