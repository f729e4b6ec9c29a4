"""Face Align Crop with face_index -2 (the speaker by sync) inside a real ComfyUI, on a two-face video (demo1's
face beside its time-reversed copy) with tiny random SyncNet / S3FD weights: the per-shot choice is reported in
the node's UI; without SyncNet connected the error names what to connect and the files."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402

VIDEO = "ls_two_faces.mp4"
SYNCNET_FILE, S3FD_FILE = "auxiliary/speaker_syncnet_v2.model", "auxiliary/speaker_sfd_face.pth"
FRAMES = 40


@pytest.fixture(scope="module")
def speaker_env(comfy, media, tmp_path_factory):
    face = sync_media.face_frames(media, FRAMES, size=240)
    frames = np.ascontiguousarray(np.concatenate([face, face[::-1]], axis=2))
    sync_media.write_video(Path(comfy.input_dir) / VIDEO, frames, wav16k=sync_media.speech(media, FRAMES))
    root = sync_media.metric_models(tmp_path_factory.mktemp("metric"), s3fd_bias=4.0)  # face-sized random tracks
    aux = Path(comfy.models_dir) / "latentsync" / "auxiliary"
    aux.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "latentsync" / "auxiliary" / "syncnet_v2.model", aux / Path(SYNCNET_FILE).name)
    shutil.copy(root / "latentsync" / "auxiliary" / "sfd_face.pth", aux / Path(S3FD_FILE).name)
    return comfy


def prompt(comfy, connect: bool) -> dict:
    names = comfy.model_names
    align = {"images": ["1", 0], "model": ["2", 0], "detector": "auto", "face_index": -2, "smooth": True}
    if connect:
        align.update(syncnet=["3", 0], audio=["1", 1], fps=["1", 2])
    return {
        "1": {"class_type": "LatentSyncLoadVideo", "inputs": {"video": VIDEO, "frame_load_cap": 0, "skip_first_frames": 0}},
        "2": {"class_type": "LoadLatentSyncModel", "inputs": {"unet": names["unet"], "whisper": names["whisper"],
                                                              "vae": names["vae"], "version": "auto", "dtype": "fp32",
                                                              "download": False}},
        "3": {"class_type": "LatentSyncLoadSyncNet", "inputs": {"syncnet": SYNCNET_FILE, "face_detector": S3FD_FILE,
                                                                "download": False}},
        "4": {"class_type": "LatentSyncFaceAlignCrop", "inputs": align},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "test/speaker"}},
    }


def test_speaker_choice_is_reported(speaker_env):
    run = speaker_env.run(prompt(speaker_env, True), timeout=600)
    assert run.ok, f"{run.outcome}: {run.error()}\n{speaker_env.log_tail(40)}"
    report = run.outputs("4")["latentsync_faces"][0]
    lines = report["speaker"]
    assert lines and lines[0].startswith(f"frames 0-{FRAMES - 1}: "), lines
    assert " speaks (confidence " in lines[0], lines  # SyncNet chose among the S3FD tracks
    assert report["frames"] == FRAMES


def test_speaker_without_syncnet_names_what_to_connect(speaker_env):
    run = speaker_env.run(prompt(speaker_env, False), timeout=600)
    errors = run.of_type("execution_error")
    assert not run.ok and errors and errors[0]["node_id"] == "4"
    text = errors[0]["exception_message"]
    assert "syncnet" in text and "auxiliary/syncnet_v2.model" in text and "audio" in text
