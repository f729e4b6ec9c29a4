"""LatentSync Fix Audio Offset inside a real ComfyUI: the measured shift applied to the AUDIO (checked against the
Sync Score node's offset of the same clip, and by scoring the shifted audio), and clips it leaves alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_sync_score_node import MUTE, S3FD_FILE, SPEAKING
from test_sync_score_node import sync_env as score_env  # noqa: F401

from latentsync.metrics import tiny

SYNCNET_FILE = "auxiliary/test_syncnet_v2_seed3.model"  # random weights that measure a non-zero offset here


@pytest.fixture(scope="module")
def sync_env(score_env):  # noqa: F811
    tiny.write_syncnet_v2(Path(score_env.models_dir) / "latentsync" / SYNCNET_FILE, seed=3)
    return score_env


def prompt(video: str, min_confidence: float = 0.0) -> dict:
    return {
        "1": {"class_type": "LatentSyncLoadVideo", "inputs": {"video": video, "frame_load_cap": 0, "skip_first_frames": 0}},
        "2": {"class_type": "LatentSyncLoadSyncNet", "inputs": {"syncnet": SYNCNET_FILE, "face_detector": S3FD_FILE,
                                                                "download": False}},
        "3": {"class_type": "LatentSyncSyncScore", "inputs": {"images": ["1", 0], "audio": ["1", 1], "fps": ["1", 2],
                                                              "syncnet": ["2", 0], "detect_faces": False,
                                                              "min_track": 20}},
        "5": {"class_type": "LatentSyncFixAudioOffset", "inputs": {
            "images": ["1", 0], "audio": ["1", 1], "fps": ["1", 2], "syncnet": ["2", 0],
            "min_confidence": min_confidence, "max_offset": 15, "detect_faces": False, "min_track": 20}},
        "6": {"class_type": "LatentSyncSyncScore", "inputs": {"images": ["1", 0], "audio": ["5", 0], "fps": ["1", 2],
                                                              "syncnet": ["2", 0], "detect_faces": False,
                                                              "min_track": 20}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["3", 3], "filename_prefix": "test/offset_before"}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["6", 3], "filename_prefix": "test/offset_after"}},
    }


def run(comfy, video: str, **kwargs) -> tuple[dict, dict, dict]:
    done = comfy.run(prompt(video, **kwargs), timeout=600)
    assert done.ok, f"{done.outcome}: {done.error()}\n{comfy.log_tail(40)}"
    return (done.outputs("3")["latentsync_sync"][0], done.outputs("5")["latentsync_offset"][0],
            done.outputs("6")["latentsync_sync"][0])


def test_node_is_listed_with_docs(sync_env):  # noqa: F811
    node = sync_env.object_info()["LatentSyncFixAudioOffset"]
    assert node["category"].startswith("LatentSync/") and node["display_name"] == "LatentSync Fix Audio Offset"
    assert node["output"] == ["AUDIO", "INT", "STRING"]
    for name, spec in node["input"]["required"].items():
        assert (spec[1] if len(spec) > 1 else {}).get("tooltip"), name


def test_shift_follows_the_measured_offset(sync_env):  # noqa: F811
    before, fix, after = run(sync_env, SPEAKING)
    assert before["scorable"] and fix["scorable"]
    assert before["offset"] != 0, "these random weights measure a non-zero offset on this clip"
    assert fix["applied"] and fix["offset"] == before["offset"]
    assert fix["samples"] == before["offset"] * 640  # LoadVideo gives this clip's 16 kHz track as is
    way = "delayed" if before["offset"] > 0 else "advanced"
    assert re.match(rf"audio {way} by {abs(before['offset'])} frames? at 25 fps", fix["report"]), fix["report"]
    assert after["scorable"] and after["confidence"] != before["confidence"]  # the shifted audio was scored


@pytest.mark.parametrize("video, kwargs, words", [(MUTE, {}, ["not scorable", "silent"]),
                                                  (SPEAKING, {"min_confidence": 19.0}, ["below 19"])])
def test_clips_left_alone(sync_env, video, kwargs, words):  # noqa: F811
    _, fix, _ = run(sync_env, video, **kwargs)
    assert not fix["applied"] and fix["offset"] == 0 and fix["report"].startswith("audio unchanged: ")
    for word in words:
        assert word in fix["report"], fix["report"]
