"""The streaming Video File node has the graph's options (keep_silent_mouth, posterior, smooth) and writes the
workflow into its mp4 as core's SaveVideo does; old prompts without the new inputs still run (real ComfyUI)."""

from __future__ import annotations

import json
import os

import av
import numpy as np
from media_variants import write_wav
from workflow_helpers import SHORT_SPEECH_NAME, VIDEO_NAME

WORKFLOW = {"last_node_id": 2, "nodes": [{"id": 2, "type": "LatentSyncVideoFile"}], "version": 0.4}


def prompt_of(comfy, prefix: str, **extra) -> dict:
    names = comfy.model_names
    inputs = {"model": ["1", 0], "vae": ["1", 1], "video": VIDEO_NAME, "audio": SHORT_SPEECH_NAME, "seed": 3,
              "steps": 1, "guidance": 1.5, "deepcache": False, "detector": "auto", "face_index": -1,
              "length_policy": "pingpong", "filename_prefix": prefix, "crf": 0, **extra}
    return {"1": {"class_type": "LoadLatentSyncModel",
                  "inputs": {"unet": names["unet"], "whisper": names["whisper"], "vae": names["vae"],
                             "version": "auto", "dtype": "fp32", "download": False}},
            "2": {"class_type": "LatentSyncVideoFile", "inputs": inputs}}


def run_ok(comfy, prompt: dict, workflow: dict | None = None):
    body = {"prompt": prompt, "client_id": comfy.client_id}
    if workflow is not None:  # what the browser sends: the UI graph travels as extra_pnginfo["workflow"]
        body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
    status, resp = comfy.request("/prompt", body)
    assert status == 200 and not resp.get("node_errors"), resp
    run = comfy.wait(resp["prompt_id"])
    assert run.ok, f"{run.outcome}: {run.error()}\n{comfy.log_tail(40)}"
    out = run.outputs("2")
    item = out["latentsync_video"][0]
    return os.path.join(comfy.output_dir, item.get("subfolder", ""), item["filename"]), out["text"][0]


def frames_and_tags(path: str) -> tuple[np.ndarray, dict]:
    with av.open(path) as container:
        tags = dict(container.metadata)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames.astype(np.int16), tags


def test_workflow_metadata_and_the_graph_options(comfy):
    plain, summary = run_ok(comfy, prompt_of(comfy, "test/opts_plain"), WORKFLOW)
    frames, tags = frames_and_tags(plain)
    assert json.loads(tags["workflow"]) == WORKFLOW
    assert json.loads(tags["prompt"])["2"]["class_type"] == "LatentSyncVideoFile"
    assert "silent" not in summary

    # The posterior reaches the sampler: it changes the written frames (crf 0, so encoding hides nothing).
    # smooth goes to the runner as Face Align Crop's goes to the alignment (here the node only has to accept it).
    path, _ = run_ok(comfy, prompt_of(comfy, "test/opts_mean", posterior="mean", smooth=False))
    other, other_tags = frames_and_tags(path)
    assert other.shape == frames.shape
    assert np.abs(other - frames).max() > 0, "posterior = mean changed nothing"
    assert "workflow" not in other_tags  # no UI graph was sent with this prompt

    # Silent speech with keep_silent_mouth: the original mouth is kept on every frame, and the summary says so.
    silent = comfy.allowed_dir / "stream_silence.wav"
    write_wav(silent, np.zeros(16000, np.int16), 16000)
    _, summary = run_ok(comfy, prompt_of(comfy, "test/opts_silent", keep_silent_mouth=True, audio_path=str(silent)))
    assert "original mouth kept on" in summary, summary
