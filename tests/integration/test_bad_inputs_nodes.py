"""The bad-input corpus (tests/bad_inputs.py) through the file nodes in the real ComfyUI: Load Video, Load Audio
and the streaming Video File node. Per case: the run succeeds where the input is odd but valid, else the message
(validation or execution error) names the input and the fix, comes from a deliberate check (no IndexError and the
like), the server survives, no input changes and nothing is written outside ComfyUI's output and temp folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bad_inputs import CASES, BaseMedia, snapshot, write_case
from workflow_helpers import SHORT_SPEECH_NAME, STILL_NAME

NODE_CASES = [c for c in CASES if c.node]
DELIBERATE = ("ValueError", "MediaError", "AccessError", "OptionError", "NoFaceError", "FileNotFoundError",
              "OutOfMemory")


@pytest.fixture(scope="module")
def corpus(comfy, media):
    """Every node case written under input/corpus/<case>/in, and a snapshot of what may not change."""
    root = comfy.input_dir / "corpus"
    base = BaseMedia.build(media, root / "_base")
    written = {}
    for case in NODE_CASES:
        argv, named, _ = write_case(case, root / case.name, base)
        video, audio = argv[argv.index("--video") + 1], argv[argv.index("--audio") + 1]
        written[case.name] = {"video": os.path.relpath(video, comfy.input_dir),
                              "audio": os.path.relpath(audio, comfy.input_dir), "named": named}
    (root / "_base").rename(comfy.root / "corpus_base")  # out of the input folder: not read by any node
    return written


def guarded(comfy) -> dict:
    """Every file of this ComfyUI's private folders except output/ and temp/ (and ComfyUI's own code and logs)."""
    skip = {comfy.output_dir, comfy.temp_dir, comfy.root / "comfyui", comfy.root / "user", comfy.log_path,
            comfy.root / "base"}
    files = {}
    for entry in comfy.root.iterdir():
        if entry in skip or entry.suffix == ".db":
            continue
        files.update(snapshot(entry) if entry.is_dir() else {str(entry): (entry.stat().st_size, "")})
    return files


def prompt_for(comfy, case, files) -> dict:
    if case.node == "LoadAudio":
        return {"1": {"class_type": "LatentSyncLoadAudio", "inputs": {"audio": files["audio"], "path": ""}},
                "2": {"class_type": "LoadImage", "inputs": {"image": STILL_NAME}},
                "3": {"class_type": "LatentSyncMuxAudio", "inputs": {"images": ["2", 0], "audio": ["1", 0],
                      "fps": 25.0, "filename_prefix": "test/corpus", "crf": 30, "save_output": False}}}
    if case.node == "LoadVideo":
        return {"1": {"class_type": "LatentSyncLoadVideo", "inputs": {"video": files["video"], "frame_load_cap": 0,
                                                                       "skip_first_frames": 0, "path": ""}},
                "3": {"class_type": "LatentSyncMuxAudio", "inputs": {"images": ["1", 0], "audio": ["1", 1],
                      "fps": ["1", 2], "filename_prefix": "test/corpus", "crf": 30, "save_output": False}}}
    names = comfy.model_names
    inputs = {"model": ["9", 0], "vae": ["9", 1], "video": files["video"],
              "audio": files["audio"] if files["audio"].endswith(".wav") else SHORT_SPEECH_NAME, "seed": 3,
              "steps": 1, "guidance": 1.5, "deepcache": False, "detector": "offline", "face_index": -1,
              "length_policy": "pingpong", "filename_prefix": "test/corpus", "crf": 30}
    inputs.update(case.node_inputs)
    return {"9": {"class_type": "LoadLatentSyncModel",
                  "inputs": {"unet": names["unet"], "whisper": names["whisper"], "vae": names["vae"],
                             "version": "auto", "dtype": "fp32", "download": False}},
            "1": {"class_type": "LatentSyncVideoFile", "inputs": inputs}}


@pytest.mark.parametrize("case", NODE_CASES, ids=[c.name for c in NODE_CASES])
def test_file_nodes_answer_every_bad_input(comfy, corpus, case):
    files = corpus[case.name]
    before = guarded(comfy)
    prompt = prompt_for(comfy, case, files)
    status, resp = comfy.queue(prompt)
    refused = status != 200 or (isinstance(resp, dict) and resp.get("node_errors"))
    if refused:
        text, kind, ok = json.dumps(resp), "validation", False
    else:
        run = comfy.wait(resp["prompt_id"])
        ok = run.ok
        error = (run.of_type("execution_error") or [{}])[0]
        kind = str(error.get("exception_type", ""))
        text = str(error.get("exception_message", "")) + json.dumps(run.outputs("1"))
    assert comfy.proc.poll() is None, f"ComfyUI died on {case.name}:\n{comfy.log_tail()}"
    assert ok == case.node_ok, f"{case.name}: ok={ok}, {kind}: {text[:2000]}\n{comfy.log_tail(30)}"
    low = text.lower()
    for fragment in case.node_says:
        assert fragment.lower() in low, f"{fragment!r} missing from: {text[:2000]}"
    if not ok:
        assert kind == "validation" or kind.split(".")[-1] in DELIBERATE, f"{case.name}: {kind}: {text[:1000]}"
        named = Path(files["video" if case.node in ("LoadVideo", "VideoFile") else "audio"]).name
        option = next(iter(case.node_inputs), None)
        assert named.lower() in low or (option and option in low), f"{case.name}: names neither input: {text[:1000]}"
    assert guarded(comfy) == before, "a file changed or appeared outside output/ and temp/"
