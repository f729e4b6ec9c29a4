"""Raw videos for the data-pipeline tests, made from the shared demo media: the faces of demo1 and demo2 at a size
the offline detector finds quickly, at 25 and 30 fps, with a hard cut, plus an unreadable file and a silent one."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from latentsync.audio.waveform import load_audio
from media_variants import encode_rgb

# Squares around each demo's face at full resolution (left, top, right, bottom), the face about 40 % of the side.
SQUARES = {"demo1_video.mp4": (256, 384, 896, 1024), "demo2_video.mp4": (232, 145, 872, 785)}
SIZE = 320


def face_frames(media: Path, name: str, count: int, size: int = SIZE) -> np.ndarray:
    """The first ``count`` frames of a demo video cropped to its face square, ``size`` px, uint8 RGB."""
    frames = []
    with av.open(str(media / name)) as container:
        for frame in container.decode(video=0):
            frames.append(np.asarray(frame.to_image().crop(SQUARES[name]).resize((size, size))))
            if len(frames) == count:
                break
    return np.stack(frames)


def own_audio(media: Path, name: str, seconds: float) -> tuple[np.ndarray, int]:
    """The demo video's own audio track (44.1 kHz stereo), its first ``seconds``."""
    wave, rate = load_audio(media / name)
    return wave[:, :int(round(seconds * rate))].numpy(), rate


def write(path: Path, frames: np.ndarray, fps: Fraction, audio: tuple[np.ndarray, int] | None) -> Path:
    """An H.264 mp4 (near lossless) with AAC audio at the audio's own rate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_rgb(path, frames, codec="libx264", fmt="mp4", rate=fps, options={"crf": "12", "preset": "ultrafast"},
               audio=audio)
    return path


def make_source(media: Path, src: Path, *, long_frames: int = 150, shot_frames: int = 30) -> dict[str, Path]:
    """SRC with: ``talk.mp4`` (demo1's face, 25 fps, 44.1 kHz stereo audio); ``sub/cut30.mp4`` (30 fps, demo1's
    face for ``shot_frames`` frames then demo2's as many: one hard cut); ``broken.mp4`` (not a video);
    ``silent.mp4`` (no audio); ``notes.txt`` (not a video, ignored)."""
    d1 = face_frames(media, "demo1_video.mp4", long_frames)
    d2 = face_frames(media, "demo2_video.mp4", shot_frames)
    files = {
        "talk": write(src / "talk.mp4", d1, Fraction(25), own_audio(media, "demo1_video.mp4", long_frames / 25)),
        "cut30": write(src / "sub" / "cut30.mp4", np.concatenate([d1[:shot_frames], d2]), Fraction(30),
                       own_audio(media, "demo2_video.mp4", 2 * shot_frames / 30)),
        "silent": write(src / "silent.mp4", d1[:30], Fraction(25), None),
    }
    files["broken"] = src / "broken.mp4"
    files["broken"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    (src / "notes.txt").write_text("not a video\n")
    return files


def write_tiny_hyperiqa(models_root: Path, seed: int = 11) -> Path:
    """HyperIQA's koniq_pretrained.pkl in the real format (a plain state dict) with the hashed random weights of
    ``latentsync.metrics.tiny`` (gain 1: the recipe of tests/fixtures/hyper_iqa_upstream.json)."""
    import torch

    from latentsync.data.hyper_iqa import HyperNet
    from latentsync.metrics.files import KONIQ_HYPERIQA
    from latentsync.metrics.tiny import init_state

    shapes = {k: tuple(v.shape) for k, v in HyperNet().state_dict().items()}
    dest = Path(KONIQ_HYPERIQA.dest(str(models_root)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(init_state(shapes, seed, gain=1.0), dest)
    return dest
