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


# The TTS node of lipsync_tts_upscale: "FL Chatterbox TTS" of filliptm/ComfyUI_Fill-ChatterBox (Comfy registry
# comfyui_fill-chatterbox 1.0.4, commit 596850bc, chatterbox_node.py). Its inputs in their order, for the twin check
# (the test server does not have the pack): (name, is_widget).
TTS_NODE = "FL_ChatterboxTTS"
TTS_INPUTS = {"required": [("text", "STRING"), ("exaggeration", "FLOAT"), ("cfg_weight", "FLOAT"),
                           ("temperature", "FLOAT"), ("seed", "INT")],
              "optional": [("audio_prompt", "AUDIO"), ("use_cpu", "BOOLEAN"), ("keep_model_loaded", "BOOLEAN")]}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _inputs(info: dict) -> list[tuple[str, str, dict]]:
    """(name, type, options) of a node's inputs in the order the editor creates them (input_order)."""
    out = []
    for cat in ("required", "optional"):
        specs = info["input"].get(cat, {})
        for name in info.get("input_order", {}).get(cat, list(specs)):
            spec = specs[name]
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            out.append((name, kind, spec[1] if len(spec) > 1 else {}))
    return out


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API prompt a UI workflow describes, as the editor's graphToPrompt builds it: widget values by position
    (a seed's "control after generate" value and upload-button values skipped), links as [node id, output slot]."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in ("Note", "MarkdownNote"):
            continue
        if node["type"] == TTS_NODE and TTS_NODE not in object_info:
            info = {"input": {c: {n: [t, {}] for n, t in items} for c, items in TTS_INPUTS.items()},
                    "input_order": {c: [n for n, _ in items] for c, items in TTS_INPUTS.items()}}
        else:
            info = object_info[node["type"]]
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, kind, options in _inputs(info):
            widget = kind in WIDGET_TYPES and not options.get("forceInput")
            value = values.pop(0) if widget and values else None
            if widget and kind == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed")):
                values.pop(0)  # "fixed" / "randomize": the editor's, not the node's
            if name in linked:
                inputs[name] = [str(linked[name][1]), linked[name][2]]
            elif widget:
                inputs[name] = value
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def load_api(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def load_ui(name: str) -> dict:
    return json.loads((UI_WORKFLOWS / name).read_text())


def ui_names() -> list[str]:
    """Stems of the UI workflows shipped as templates."""
    return sorted(p.stem for p in UI_WORKFLOWS.glob("*.json"))


def nodes_of(prompt: dict, class_type: str) -> list[str]:
    return [nid for nid, node in prompt.items() if node["class_type"] == class_type]


SYNC_FILES = ("auxiliary/test_wf_syncnet_v2.model", "auxiliary/test_wf_sfd_face.pth")


def sync_files(server) -> tuple[str, str]:
    """Tiny SyncNet v2 / S3FD files (random weights, real formats) in the server's models folder, for the
    sync-score workflow; written on first use."""
    from latentsync.metrics import tiny

    aux = Path(server.models_dir) / "latentsync"
    if not (aux / SYNC_FILES[1]).is_file():
        tiny.write_syncnet_v2(aux / SYNC_FILES[0], seed=5)
        tiny.write_s3fd(aux / SYNC_FILES[1], seed=5, face_bias=-30.0)
    return SYNC_FILES


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
    for nid in nodes_of(prompt, TTS_NODE):  # the test server has no TTS pack: the speech file stands in for it
        prompt[nid] = {"class_type": "LatentSyncLoadAudio", "_meta": {"title": "speech (stands in for the TTS node)"},
                       "inputs": {"audio": speech, "path": ""}}
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
    for nid in nodes_of(prompt, "LatentSyncLoadSyncNet"):
        syncnet, s3fd = sync_files(server)
        prompt[nid]["inputs"].update(syncnet=syncnet, face_detector=s3fd, download=False)
    for nid in nodes_of(prompt, "LatentSyncMuxAudio") + nodes_of(prompt, "SaveVideo"):
        prompt[nid]["inputs"].update(filename_prefix="test/LatentSync")
    for key, value in (overrides or {}).items():
        nid, inp = key.split(".", 1)
        prompt[nid]["inputs"][inp] = value
    return prompt


def widget_index(node: dict, name: str, object_info: dict) -> int:
    """Where input ``name``'s value sits in a UI node's widgets_values (see :func:`ui_to_api`)."""
    index = 0
    for input_name, kind, options in _inputs(object_info[node["type"]]):
        if kind not in WIDGET_TYPES or options.get("forceInput"):
            continue
        if input_name == name:
            return index
        index += 2 if kind == "INT" and (options.get("control_after_generate") or input_name in ("seed", "noise_seed")) \
            else 1
    raise KeyError(f"{node['type']} has no widget {name}")


def configure_ui(ui: dict, server, object_info: dict, *, steps: int = 1, short: bool = True) -> dict:
    """A shipped UI workflow set up like :func:`configure` does the API twin (tiny models, test media, few steps),
    for running it from the editor; the TTS node (not installed on the test server) becomes a speech file loader."""
    api = configure(ui_to_api(ui, object_info), server, steps=steps, short=short)
    ui = copy.deepcopy(ui)
    for node in ui["nodes"]:
        nid = str(node["id"])
        if nid not in api:
            continue
        if node["type"] == TTS_NODE:
            node.update(type="LatentSyncLoadAudio", title="Speech (stands in for the TTS node)", inputs=[],
                        outputs=node["outputs"][:1], widgets_values=[api[nid]["inputs"]["audio"], "", None, ""])
            node["properties"] = {"Node name for S&R": "LatentSyncLoadAudio"}
            continue
        for name, value in api[nid]["inputs"].items():
            if not isinstance(value, list):
                node["widgets_values"][widget_index(node, name, object_info)] = value
    return ui

