"""Media I/O: video decode/encode and audio muxing through PyAV (see video.py for the public API).

Names are resolved on first use, so the pure-arithmetic helpers (``io.timing``) work where PyAV is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

_FROM_VIDEO = (
    "DecodedVideo",
    "MediaError",
    "VideoInfo",
    "VideoWriter",
    "as_fps",
    "iter_video_frames",
    "probe_video",
    "read_video",
    "samples_for_frames",
)

__all__ = list(_FROM_VIDEO)


def __getattr__(name: str) -> Any:
    if name in _FROM_VIDEO:
        return getattr(importlib.import_module(".video", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
