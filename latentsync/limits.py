"""Size limits on input media, checked from the file's header before anything is decoded.

A small compressed file can decode to gigabytes (a 1.4 MB JPEG of 9000x9000 pixels, a FLAC of hours of silence),
so every reader compares what the header promises with these limits first and refuses with a message that names
the file, the limit and the fix. The values are what the pipeline handles within a few GB of host memory:

* frames (video or image): at most ``MAX_FRAME_SIDE`` = 8192 px a side and ``MAX_FRAME_PIXELS`` = 8192 x 4320
  (8K DCI, 35.4 megapixels);
* audio: at most ``MAX_AUDIO_CHANNELS`` = 8 channels (FFmpeg's largest default layout, 7.1), ``MAX_AUDIO_SECONDS``
  = 3 hours and ``MAX_AUDIO_BYTES`` = 4 GiB once decoded to float32 (3 hours of 48 kHz stereo fits).
"""

from __future__ import annotations

import os
from typing import Optional

MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = 8192 * 4320
MAX_AUDIO_CHANNELS = 8
MAX_AUDIO_SECONDS = 3 * 3600
MAX_AUDIO_BYTES = 4 * 2**30
_FLOAT32 = 4


def frame_limit_text() -> str:
    """The frame-size limit in words, for messages."""
    return f"{MAX_FRAME_SIDE} px a side and {MAX_FRAME_PIXELS / 1e6:.1f} megapixels (8K)"


def frame_size_problem(width: int, height: int, what: str) -> Optional[str]:
    """Why a ``width`` x ``height`` frame of ``what`` (a file name) is refused, or None when it is within limits."""
    if width <= 0 or height <= 0:
        return f"{what}: the frames are {width}x{height} pixels; the file is damaged or not a picture."
    if max(width, height) <= MAX_FRAME_SIDE and width * height <= MAX_FRAME_PIXELS:
        return None
    return (f"{what}: the frames are {width}x{height} pixels, above the limit of {frame_limit_text()}. "
            f"Scale it down first (e.g. to 3840x2160).")


def audio_size_problem(channels: int, sample_rate: int, seconds: Optional[float], what: str) -> Optional[str]:
    """Why audio of this shape is refused (channels, duration, decoded size), or None; ``seconds`` may be unknown."""
    if channels > MAX_AUDIO_CHANNELS:
        return (f"{what} has {channels} audio channels; at most {MAX_AUDIO_CHANNELS} are supported (7.1). "
                "Mix it down to stereo or mono first (e.g. ffmpeg -i IN -ac 2 OUT.wav).")
    if seconds is None:
        return None
    if seconds > MAX_AUDIO_SECONDS:
        return (f"{what} lasts {seconds / 3600:.1f} hours; the limit is {MAX_AUDIO_SECONDS // 3600} hours. "
                "Cut it into parts and lip-sync each.")
    return decoded_audio_problem(channels, sample_rate, int(seconds * sample_rate), what)


def decoded_audio_problem(channels: int, sample_rate: int, samples: int, what: str) -> Optional[str]:
    """Why ``samples`` per channel of decoded audio are too many to hold (float32), or None."""
    size = max(1, channels) * samples * _FLOAT32
    if size <= MAX_AUDIO_BYTES:
        return None
    return (f"{what} decodes to {size / 2**30:.1f} GiB of samples ({channels} channels at {sample_rate} Hz); the "
            f"limit is {MAX_AUDIO_BYTES // 2**30} GiB (3 hours of 48 kHz stereo). Cut it into parts, or mix it "
            "down to mono.")


def host_memory_bytes() -> Optional[int]:
    """This machine's physical memory in bytes, where the OS says (Linux, macOS), else None."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def in_memory_frames_problem(frames: int, width: int, height: int, what: str, fix: str) -> Optional[str]:
    """Why holding ``frames`` float32 RGB frames at once would take more than 3/4 of the host's memory, or None."""
    need = frames * width * height * 3 * _FLOAT32
    total = host_memory_bytes()
    if total is None or need <= 0.75 * total:
        return None
    return (f"{what}: {frames} frames of {width}x{height} take {need / 2**30:.1f} GiB as an IMAGE batch, more than 3/4 "
            f"of this machine's {total / 2**30:.1f} GiB of memory. {fix}")
