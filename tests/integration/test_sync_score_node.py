"""LatentSync Load SyncNet + Sync Score inside a real ComfyUI: scorable and not-scorable clips, the curve image.

Tiny random SyncNet v2 / S3FD weights in the real file formats go into models/latentsync/auxiliary; test clips
(a real face, speech, no speech) into the input folder. The S3FD weights never fire, so "detect_faces on" gives
the no-face result, while "off" scores the frames as face crops.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_variants import encode_rgb
from PIL import Image
from workflow_helpers import VIDEO_NAME

from latentsync.metrics import tiny

SPEAKING = "ls_sync_speaking.mp4"  # 45 frames (1.8 s) of demo1's face with its speech
MUTE = "ls_sync_mute.mp4"  # the same frames, silent audio track
SYNCNET_FILE = "auxiliary/test_syncnet_v2.model"
S3FD_FILE = "auxiliary/test_sfd_face.pth"
FRAMES = 45


@pytest.fixture(scope="module")
def sync_env(comfy, media):
    aux = Path(comfy.models_dir) / "latentsync" / "auxiliary"
    tiny.write_syncnet_v2(aux / Path(SYNCNET_FILE).name, seed=5)
    tiny.write_s3fd(aux / Path(S3FD_FILE).name, seed=5, face_bias=-30.0)
    frames = []
    with av.open(str(media / "demo1_video.mp4")) as container:
        for frame in container.decode(video=0):
            frames.append(np.asarray(frame.to_image().crop((352, 480, 800, 928)).resize((128, 128))))
            if len(frames) == FRAMES:
                break
    frames = np.stack(frames)
    with av.open(str(media / "demo1_audio.wav")) as container:
        speech = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    speech = (speech[: FRAMES * 640].astype(np.float32) / 32768.0)[None]
    encode_rgb(Path(comfy.input_dir) / SPEAKING, frames, codec="libx264", fmt="mp4", rate=Fraction(25),
               options={"crf": "12"}, audio=(speech, 16000))
    encode_rgb(Path(comfy.input_dir) / MUTE, frames, codec="libx264", fmt="mp4", rate=Fraction(25),
               options={"crf": "12"}, audio=(np.zeros_like(speech), 16000))
    return comfy


def prompt(video: str, detect: bool, min_track: int = 50) -> dict:
    return {
        "1": {"class_type": "LatentSyncLoadVideo", "inputs": {"video": video, "frame_load_cap": 0, "skip_first_frames": 0}},
        "2": {"class_type": "LatentSyncLoadSyncNet", "inputs": {"syncnet": SYNCNET_FILE, "face_detector": S3FD_FILE,
                                                                "download": False}},
        "3": {"class_type": "LatentSyncSyncScore", "inputs": {"images": ["1", 0], "audio": ["1", 1], "fps": ["1", 2],
                                                              "syncnet": ["2", 0], "detect_faces": detect,
                                                              "min_track": min_track}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 3], "filename_prefix": "test/sync_curve"}},
    }


def run_score(comfy, video: str, detect: bool, **kwargs) -> tuple[dict, np.ndarray]:
    run = comfy.run(prompt(video, detect, **kwargs), timeout=600)
    assert run.ok, f"{run.outcome}: {run.error()}\n{comfy.log_tail(40)}"
    info = run.outputs("3")["latentsync_sync"][0]
    saved = run.outputs("4")["images"][0]
    path = os.path.join(comfy.output_dir, saved.get("subfolder", ""), saved["filename"])
    return info, np.asarray(Image.open(path).convert("RGB"))


def test_nodes_are_listed_with_docs(sync_env):
    info = sync_env.object_info()
    for node_id in ("LatentSyncLoadSyncNet", "LatentSyncSyncScore"):
        node = info[node_id]
        assert node["category"].startswith("LatentSync/") and len(node["description"]) > 40
        for name, spec in node["input"]["required"].items():
            assert (spec[1] if len(spec) > 1 else {}).get("tooltip"), f"{node_id}.{name}"
    choices = info["LatentSyncLoadSyncNet"]["input"]["required"]["syncnet"][0]
    assert choices[0] == "auxiliary/syncnet_v2.model" and SYNCNET_FILE in choices


def test_face_crops_are_scored(sync_env):
    info, curve = run_score(sync_env, SPEAKING, detect=False)
    assert info["scorable"], info["report"]
    assert math.isfinite(info["confidence"]) and info["confidence"] >= 0 and math.isfinite(info["distance"])
    assert -15 <= info["offset"] <= 15 and info["tracks"] == 1
    assert info["report"].startswith("SyncNet confidence")
    assert curve.shape == (256, 768, 3)
    assert np.all(curve[curve.shape[0] // 2, :40] == curve[curve.shape[0] // 2, 0])  # the plot's margin
    assert np.any(np.all(curve == np.array([90, 200, 120]), axis=-1))  # the confidence line is drawn


@pytest.mark.parametrize("video, detect, words", [
    (MUTE, False, ["silent"]),
    (SPEAKING, True, ["no face track", "of 45 frames"]),
    (VIDEO_NAME, True, ["too short", "12 frames"]),
])
def test_not_scorable_clips_give_a_report_not_an_error(sync_env, video, detect, words):
    info, curve = run_score(sync_env, video, detect, min_track=20)
    assert not info["scorable"] and info["confidence"] is None and info["distance"] is None and info["offset"] == 0
    assert info["report"].startswith("not scorable:")
    for word in words:
        assert word in info["report"], info["report"]
    assert curve.shape == (256, 768, 3) and not np.any(np.all(curve == np.array([90, 200, 120]), axis=-1))
