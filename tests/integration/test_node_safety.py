"""What a prompt may make the file nodes read, in the real ComfyUI executor: dropdown names stay inside ComfyUI's
input folder (as ComfyUI's own list check would), path fields only reach input/output/temp and the folders in
LATENTSYNC_ALLOWED_DIRS, and a refusal reads the same whether the file exists or not (no existence oracle)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from media_variants import write_wav
from workflow_helpers import SHORT_SPEECH_NAME, STILL_NAME

NODE = "1"


def audio_prompt(comfy, audio: str = SHORT_SPEECH_NAME, path: str = "") -> dict:
    """LatentSync Load Audio feeding a Mux (an output node) that writes to the temp folder."""
    return {
        NODE: {"class_type": "LatentSyncLoadAudio", "inputs": {"audio": audio, "path": path}},
        "2": {"class_type": "LoadImage", "inputs": {"image": STILL_NAME}},
        "3": {"class_type": "LatentSyncMuxAudio",
              "inputs": {"images": ["2", 0], "audio": [NODE, 0], "fps": 25.0, "filename_prefix": "test/safety",
                         "crf": 30, "save_output": False}},
    }


def refusal(comfy, prompt: dict) -> str:
    """The validation message of a prompt that must be refused before anything runs."""
    status, resp = comfy.queue(prompt)
    assert status == 400 or (isinstance(resp, dict) and resp.get("node_errors")), resp
    errors = resp["node_errors"][NODE]["errors"]
    return " ".join(str(e.get("details", "")) for e in errors)


@pytest.fixture(scope="module")
def outside(comfy):
    """A 'secret' wav beside the input folder (readable by the server, not meant for prompts)."""
    secret = comfy.root / "secret" / "voice.wav"
    secret.parent.mkdir(exist_ok=True)
    write_wav(secret, np.zeros(1600, np.int16), 16000)
    return secret


def outputs_now(comfy) -> set:
    return {os.path.join(d, f) for folder in (comfy.output_dir, comfy.temp_dir) for d, _, fs in os.walk(folder)
            for f in fs}


@pytest.mark.parametrize("name", ["../secret/voice.wav", "ABSOLUTE", "../../secret/voice.wav [input]",
                                  "sub/../../secret/voice.wav"])
def test_dropdown_names_cannot_leave_the_input_folder(comfy, outside, name):
    name = str(outside) if name == "ABSOLUTE" else name
    before = outputs_now(comfy)
    status, resp = comfy.queue(audio_prompt(comfy, audio=name))
    assert status == 400 or (isinstance(resp, dict) and resp.get("node_errors")), resp
    errors = resp["node_errors"][NODE]["errors"]  # ComfyUI's own list check (paths.InputChoices), on the dropdown
    assert [(e["type"], e["extra_info"]["input_name"]) for e in errors] == [("value_not_in_list", "audio")], errors
    assert outputs_now(comfy) == before


def test_path_fields_outside_the_allowed_folders_are_refused_alike_whether_or_not_the_file_exists(comfy, outside):
    existing = refusal(comfy, audio_prompt(comfy, path=str(outside)))
    missing = refusal(comfy, audio_prompt(comfy, path=str(outside.with_name("no_such.wav"))))
    assert "outside the folders LatentSync nodes may read" in existing and "LATENTSYNC_ALLOWED_DIRS" in existing
    assert existing.replace("voice.wav", "X") == missing.replace("no_such.wav", "X")  # no existence oracle
    # A symlink inside the input folder does not lead a path field outside either.
    link = comfy.input_dir / "link_to_secret.wav"
    if not link.exists():
        link.symlink_to(outside)
    assert "outside the folders" in refusal(comfy, audio_prompt(comfy, path=str(link)))
    video_file = {
        NODE: {"class_type": "LatentSyncVideoFile",
               "inputs": {"model": ["9", 0], "vae": ["9", 1], "video": "ls_test_clip.mp4", "audio": SHORT_SPEECH_NAME,
                          "video_path": str(outside), "seed": 1, "steps": 1, "guidance": 1.5, "deepcache": False,
                          "detector": "auto", "face_index": -1, "length_policy": "pingpong",
                          "filename_prefix": "test/never", "crf": 30}},
        "9": {"class_type": "LoadLatentSyncModel",
              "inputs": {"unet": comfy.model_names["unet"], "whisper": comfy.model_names["whisper"],
                         "vae": comfy.model_names["vae"], "version": "auto", "dtype": "fp32", "download": False}},
    }
    assert "outside the folders" in refusal(comfy, video_file)


def test_allowed_folders_and_comfy_folders_are_readable(comfy, outside):
    allowed = comfy.allowed_dir / "voice.wav"
    shutil.copy(outside, allowed)
    in_output = comfy.output_dir / "voice_in_output.wav"
    shutil.copy(outside, in_output)
    for prompt in (audio_prompt(comfy, path=str(allowed)), audio_prompt(comfy, path=str(in_output)),
                   audio_prompt(comfy, audio="voice_in_output.wav [output]")):
        run = comfy.run(prompt)
        assert run.ok, f"{run.outcome}: {run.error()}"
