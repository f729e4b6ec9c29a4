"""Media I/O: video decode/encode and audio muxing through PyAV (see video.py for the public API).

Names are resolved on first use, so the pure-arithmetic helpers (``io.timing``) work where PyAV is missing.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    video = importlib.import_module(".video", __name__)
    if name in video.__all__:
        return getattr(video, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
