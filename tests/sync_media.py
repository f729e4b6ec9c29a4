"""Real media and tiny metric models for the sync-score tests: demo1's face at a size S3FD can take, clips written
as real mp4 files, and SyncNet v2 / S3FD / StableSyncNet files with random weights in the official formats."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from latentsync.audio.waveform import load_16k_mono
from latentsync.metrics import files, tiny
from media_variants import encode_rgb, write_wav

FACE_SQUARE = (256, 384, 896, 1024)  # a square around demo1's face at full resolution (left, top, right, bottom)
S3FD_BIAS = 2.0  # with seed 5 and the two coarsest heads off: two steady 128 px boxes on demo1's face square


def face_frames(media: Path, count: int, size: int = 480, name: str = "demo1_video.mp4") -> np.ndarray:
    """The first ``count`` frames of a demo video, the face square resized to ``size`` px, uint8 RGB."""
    frames = []
    with av.open(str(media / name)) as container:
        for frame in container.decode(video=0):
            frames.append(np.asarray(frame.to_image().crop(FACE_SQUARE).resize((size, size))))
            if len(frames) == count:
                break
    return np.stack(frames)


def speech(media: Path, count: int, name: str = "demo1_audio.wav") -> torch.Tensor:
    """16 kHz mono speech for ``count`` frames at 25 fps."""
    return load_16k_mono(media / name)[:count * 640]


def write_video(path: Path, frames: np.ndarray, fps: int = 25, *, wav16k: torch.Tensor | None = None,
                lossless: bool = False) -> Path:
    """An H.264 mp4 of uint8 RGB frames, with AAC audio when ``wav16k`` is given (lossless: x264 qp 0)."""
    options = {"qp": "0"} if lossless else {"crf": "12"}
    audio = None if wav16k is None else (wav16k.numpy()[None].astype(np.float32), 16000)
    encode_rgb(path, frames, codec="libx264", fmt="mp4", rate=Fraction(fps), options={**options, "preset": "ultrafast"},
               audio=audio)
    return path


def write_audio(path: Path, wav16k: torch.Tensor) -> Path:
    """A 16 kHz mono 16-bit wav (the samples are on the int16 grid, as load_16k_mono gives them)."""
    write_wav(path, np.round(wav16k.numpy() * 32768.0).clip(-32768, 32767).astype(np.int16), 16000)
    return path


def metric_models(root: Path, *, stable_config: dict | None = None, s3fd_bias: float = S3FD_BIAS) -> Path:
    """A models root with the metric files (random weights) under latentsync/auxiliary; StableSyncNet when a
    config is given."""
    tiny.write_syncnet_v2(files.SYNCNET_V2.dest(str(root)), seed=3)
    state = tiny.s3fd_state(5, s3fd_bias)
    for head in (4, 5):  # the coarsest heads would find frame-sized "faces"; keep the random boxes face-sized
        state[f"conf.{head}.bias"][-1] -= 30.0
    dest = Path(files.S3FD_FACE.dest(str(root)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dest)
    if stable_config is not None:
        tiny.write_stable_syncnet(files.STABLE_SYNCNET.dest(str(root)), stable_config, seed=2)
    return root
