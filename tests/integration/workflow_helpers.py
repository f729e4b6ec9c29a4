"""Test media constants and helpers that point the shipped API workflows at the tiny models and test clips."""

from __future__ import annotations

import copy
import json
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = PACK_ROOT / "workflows_api"  # API-format twins of example_workflows/ (ComfyUI serves only the latter)
UI_WORKFLOWS = PACK_ROOT / "example_workflows"  # what the editor lists as templates

# Test clip: demo1's face region (the parity fixtures' crop), downscaled, 12 frames at 25 fps.
CROP = (480, 352, 448)  # y0, x0, size at full resolution
CLIP_SIZE = 256
CLIP_FRAMES = 12
CLIP_FPS = 25
# Speech lengths: whisper rows N = 50/s; upstream's frame count at 25 fps is N // 2 + 2.
SPEECH_SECONDS = 0.72  # 36 rows -> 20 frames -> 2 chunks (16 + 4): progress and chunking
SHORT_SPEECH_SECONDS = 0.24  # 12 rows -> 8 frames: every other run (the SD VAE dominates CPU time)
FRAMES = 20
SHORT_FRAMES = 8
VIDEO_NAME = "ls_test_clip.mp4"
SPEECH_NAME = "ls_test_speech.wav"
SHORT_SPEECH_NAME = "ls_test_speech_short.wav"
STILL_NAME = "ls_test_face.png"
NO_FACE_NAME = "ls_test_no_face.png"


def load_api(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def load_ui(name: str) -> dict:
    return json.loads((UI_WORKFLOWS / name).read_text())


def ui_names() -> list[str]:
    """Stems of the UI workflows shipped as templates."""
    return sorted(p.stem for p in UI_WORKFLOWS.glob("*.json"))


def nodes_of(prompt: dict, class_type: str) -> list[str]:
    return [nid for nid, node in prompt.items() if node["class_type"] == class_type]


def configure(prompt: dict, server, *, steps: int = 2, seed: int = 1247, short: bool = True,
              overrides: dict | None = None) -> dict:
    """A shipped API workflow pointed at the tiny models and test media, with few steps.

    ``short`` picks the 8-frame speech; otherwise the 20-frame one (two sampler chunks)."""
    speech = SHORT_SPEECH_NAME if short else SPEECH_NAME
    prompt = copy.deepcopy(prompt)
    names = server.model_names
    for nid in nodes_of(prompt, "LoadLatentSyncModel"):
        prompt[nid]["inputs"].update(unet=names["unet"], whisper=names["whisper"], vae=names["vae"],
                                     version="auto", dtype="fp32", download=False)
    for nid in nodes_of(prompt, "LatentSyncSampler"):
        prompt[nid]["inputs"].update(steps=steps, seed=seed)
    for nid in nodes_of(prompt, "LatentSyncLoadVideo"):
        prompt[nid]["inputs"].update(video=VIDEO_NAME, path="")
    for nid in nodes_of(prompt, "LatentSyncLoadAudio"):
        prompt[nid]["inputs"].update(audio=speech, path="")
    for nid in nodes_of(prompt, "LoadVideo"):
        prompt[nid]["inputs"].update(file=VIDEO_NAME)
    for nid in nodes_of(prompt, "LoadAudio"):
        prompt[nid]["inputs"].update(audio=speech)
    for nid in nodes_of(prompt, "LoadImage"):
        prompt[nid]["inputs"].update(image=STILL_NAME)
    for nid in nodes_of(prompt, "UpscaleModelLoader"):
        prompt[nid]["inputs"].update(model_name=names["upscaler"])
    for nid in nodes_of(prompt, "LatentSyncMuxAudio") + nodes_of(prompt, "SaveVideo"):
        prompt[nid]["inputs"].update(filename_prefix="test/LatentSync")
    for key, value in (overrides or {}).items():
        nid, inp = key.split(".", 1)
        prompt[nid]["inputs"][inp] = value
    return prompt
