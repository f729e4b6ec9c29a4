"""The sync gate on the streaming Video File node in a real ComfyUI: with min_sync set and LatentSync Load SyncNet
connected, the node's text reports every segment's decision (here a clip too short to score, passed through as
the original frames); min_sync without the syncnet input is refused with a message naming both inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_video_file_options import frames_and_tags, prompt_of

from latentsync.metrics import tiny

SYNCNET_FILE = "auxiliary/test_gate_syncnet_v2.model"
S3FD_FILE = "auxiliary/test_gate_sfd_face.pth"


def gate_prompt(comfy, prefix: str, **extra) -> dict:
    aux = Path(comfy.models_dir) / "latentsync" / "auxiliary"
    if not (aux / Path(S3FD_FILE).name).is_file():
        tiny.write_syncnet_v2(aux / Path(SYNCNET_FILE).name, seed=5)
        tiny.write_s3fd(aux / Path(S3FD_FILE).name, seed=5, face_bias=-30.0)
    prompt = prompt_of(comfy, prefix, **extra)
    prompt["3"] = {"class_type": "LatentSyncLoadSyncNet",
                   "inputs": {"syncnet": SYNCNET_FILE, "face_detector": S3FD_FILE, "download": False}}
    return prompt


def run(comfy, prompt: dict):
    status, resp = comfy.request("/prompt", {"prompt": prompt, "client_id": comfy.client_id})
    assert status == 200 and not resp.get("node_errors"), resp
    return comfy.wait(resp["prompt_id"])


def test_video_file_gate_reports_each_segment(comfy):
    prompt = gate_prompt(comfy, "test/gate_on", min_sync=3.0, sync_retries=1, syncnet=["3", 0], crf=0)
    result = run(comfy, prompt)
    assert result.ok, f"{result.outcome}: {result.error()}\n{comfy.log_tail(40)}"
    out = result.outputs("2")
    text = out["text"]
    assert "sync gate (min 3, up to 1 retries): 0 accepted, 0 passed through, 1 not scorable" in text[0], text
    assert text[1].startswith("frames 0-") and "not scorable: the clip is too short" in text[1], text
    gate = out["latentsync_gate"]
    assert len(gate) == 1 and gate[0]["decision"] == "not_scorable" and gate[0]["attempts"] == []
    # The segment's original frames pass through: the output equals the source re-encoded (crf 0 keeps 4:2:0 only).
    item = out["latentsync_video"][0]
    gated, _ = frames_and_tags(str(Path(comfy.output_dir) / item.get("subfolder", "") / item["filename"]))
    plain = run(comfy, prompt_of(comfy, "test/gate_off", crf=0))
    assert plain.ok and "sync gate" not in plain.outputs("2")["text"][0]
    item = plain.outputs("2")["latentsync_video"][0]
    generated, _ = frames_and_tags(str(Path(comfy.output_dir) / item.get("subfolder", "") / item["filename"]))
    assert gated.shape == generated.shape and np.abs(gated - generated).max() > 0  # the gate kept the originals


def test_video_file_gate_needs_the_syncnet_input(comfy):
    result = run(comfy, gate_prompt(comfy, "test/gate_no_net", min_sync=3.0))
    assert not result.ok
    message = result.error()
    assert "min_sync" in message and "syncnet" in message, message
