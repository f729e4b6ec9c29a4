"""Training clip files for the SyncNet / U-Net training tools and tests: H.264 + AAC mp4s of given frames and audio.

One writer for ``tools/train_syncnet_tiny.py`` and ``tests/train_syncnet_media.py`` (tests import it; tools never
import tests). Not ``latentsync.io.encode.VideoWriter``: that one trims or pads the audio to the video's length,
and a clip whose audio ends early is one of the cases the training tests feed upstream's dataset rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_clip(path: Path, frames: np.ndarray, wav_int16: np.ndarray, fps: int = 25) -> Path:
    """An mp4 of RGB ``frames`` (F, H, W, 3) uint8 (libx264 crf 12) with 16 kHz mono ``wav_int16`` as AAC, kept
    at its own length (as upstream's preprocessed clips, whose audio may end before the video)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono")
        for rgb in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray(wav_int16.astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in audio.encode(frame):
            out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path
