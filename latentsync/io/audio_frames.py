"""Audio samples in and out of PyAV frames through packed (interleaved) formats only.

PyAV (at least up to 18.x) miscounts the planes of planar audio with 8 or more channels: converting such a frame
to numpy, or building one from numpy, reads past the plane table and crashes the process. Packed frames have one
plane whatever the channel count, so every conversion here goes through them; FFmpeg converts packed to planar
internally where a codec needs it, with the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def layout_name(layout: Any) -> str:
    """A layout's name for PyAV (an AudioLayout or a name)."""
    return getattr(layout, "name", layout)


def planar_samples(frame: Any) -> np.ndarray:
    """(channels, samples) from a frame in a packed format (flt, s16, ...)."""
    if frame.format.is_planar:
        raise ValueError(f"planar_samples needs a packed frame, got {frame.format.name}")
    channels = frame.layout.nb_channels
    return frame.to_ndarray().reshape(-1, channels).T


def packed_frame(samples: np.ndarray, fmt: str, layout: Any, sample_rate: int) -> Any:
    """An AudioFrame in packed format ``fmt`` (flt or s16) from (channels, samples) data."""
    import av

    interleaved = np.ascontiguousarray(np.asarray(samples).T).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(interleaved, format=fmt, layout=layout_name(layout))
    frame.sample_rate = int(sample_rate)
    return frame


def float_resampler(layout: Any, rate: int) -> Any:
    """A resampler to packed float32 in ``layout`` at ``rate``."""
    import av

    return av.AudioResampler(format="flt", layout=layout_name(layout), rate=int(rate))
