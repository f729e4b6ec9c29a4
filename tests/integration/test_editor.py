"""What the ComfyUI editor shows of the pack, checked against the real server: the templates it lists and their
thumbnails, validation messages (once, on the input they are about), and the shipped UI workflows themselves."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from comfy_env import PACK_LINK_NAME
from workflow_helpers import (TTS_NODE, UI_WORKFLOWS, VIDEO_NAME, WORKFLOWS, configure, load_api,
                              load_ui, nodes_of, ui_names, ui_to_api)


def fetch(comfy, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(comfy.url + path, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_templates_are_exactly_the_ui_workflows_with_jpg_thumbnails(comfy):
    if comfy.version == "2024":
        pytest.skip("the 2024 ComfyUI serves no custom-node templates (added in December 2024)")
    status, listing = comfy.get("/workflow_templates")
    assert status == 200, listing
    assert sorted(listing.get(PACK_LINK_NAME, [])) == ui_names()
    assert len(ui_names()) == 5 and not any(n.endswith("_api") for n in ui_names())
    assert not list(UI_WORKFLOWS.glob("*_api*")) and list(WORKFLOWS.glob("*_api.json"))
    for name in ui_names():
        status, body = fetch(comfy, f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff", (name, status)  # a JPEG, as the editor asks for
        status, body = fetch(comfy, f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.json")
        assert status == 200 and b'"nodes"' in body, name  # UI format: the editor can open it
    status, _ = fetch(comfy, f"/api/workflow_templates/{PACK_LINK_NAME}/lipsync_basic_api.json")
    assert status == 404


def node_errors(comfy, prompt: dict, node: str) -> list[tuple[str, str, str]]:
    """(type, input, details) of each validation error the editor would show on ``node``."""
    status, resp = comfy.queue(prompt)
    assert status == 400 and isinstance(resp, dict) and resp.get("node_errors"), (status, resp)
    return [(e["type"], e.get("extra_info", {}).get("input_name"), e.get("details", ""))
            for e in resp["node_errors"][node]["errors"]]


def basic(comfy) -> dict:
    return configure(load_api("lipsync_basic_api.json"), comfy, steps=1)


def test_a_missing_model_file_is_one_message_on_its_own_input(comfy):
    prompt = basic(comfy)
    loader = nodes_of(prompt, "LoadLatentSyncModel")[0]
    prompt[loader]["inputs"]["whisper"] = "whisper/nowhere.pt"
    errors = node_errors(comfy, prompt, loader)
    assert [(kind, name) for kind, name, _ in errors] == [("value_not_in_list", "whisper")], errors
    assert "whisper/nowhere.pt" in errors[0][2]


def test_file_node_messages_appear_once_on_the_input_they_are_about(comfy):
    prompt = basic(comfy)
    audio = nodes_of(prompt, "LatentSyncLoadAudio")[0]
    prompt[audio]["inputs"]["path"] = str(comfy.root / "elsewhere" / "voice.wav")  # outside the readable folders
    errors = node_errors(comfy, prompt, audio)
    assert [(kind, name) for kind, name, _ in errors] == [("custom_validation_failed", "path")], errors
    assert errors[0][2].count("outside the folders LatentSync nodes may read") == 1
    prompt[audio]["inputs"].update(path="", audio="no_such_speech.wav")
    errors = node_errors(comfy, prompt, audio)
    assert [(kind, name) for kind, name, _ in errors] == [("value_not_in_list", "audio")], errors
    video = {"1": {"class_type": "LatentSyncLoadVideo",
                   "inputs": {"video": VIDEO_NAME, "frame_load_cap": 0, "skip_first_frames": 0,
                              "path": str(comfy.input_dir / "missing_clip.mp4")}},
             "2": {"class_type": "LatentSyncMuxAudio",
                   "inputs": {"images": ["1", 0], "audio": ["1", 1], "fps": ["1", 2], "filename_prefix": "test/editor",
                              "crf": 30, "save_output": False}}}
    errors = node_errors(comfy, video, "1")
    assert [(kind, name) for kind, name, _ in errors] == [("custom_validation_failed", "path")], errors
    assert "not found" in errors[0][2]


def test_a_bad_sampler_number_is_one_message_on_its_input(comfy):
    prompt = basic(comfy)
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    prompt[sampler]["inputs"]["guidance"] = float("nan")
    errors = node_errors(comfy, prompt, sampler)
    assert [(kind, name) for kind, name, _ in errors] == [("custom_validation_failed", "guidance")], errors
    prompt[sampler]["inputs"].update(guidance=1.5, steps=0)
    errors = node_errors(comfy, prompt, sampler)
    assert [(kind, name) for kind, name, _ in errors] == [("value_smaller_than_min", "steps")], errors


def test_workflows_list_their_model_files_as_core_templates_do():
    """The loader's properties.models (what the editor's missing-models dialog offers) come from the one model table,
    latentsync/model_files.py: name as the dropdown shows it, the folder ComfyUI knows, the download URL."""
    from latentsync import model_files

    official = {"1.5/latentsync_unet.pt": model_files.UNET_FILES["1.5"],
                "1.6/latentsync_unet.pt": model_files.UNET_FILES["1.6"],
                "whisper/tiny.pt": model_files.WHISPER_TINY, "sd-vae-ft-mse.safetensors": model_files.VAE_FT_MSE}
    checked = 0
    for name in ui_names():
        for node in load_ui(name + ".json")["nodes"]:
            if node["type"] != "LoadLatentSyncModel":
                continue
            expected = []
            for value in node["widgets_values"][:3]:  # unet, whisper, vae
                spec = official[value]
                folder, *sub = spec.subdir.split("/")
                assert "/".join(sub + [spec.dest_name]) == value and folder in ("latentsync", "vae"), value
                expected.append({"name": value, "url": spec.url, "directory": folder})
            assert node["properties"].get("models") == expected, name
            checked += 1
    assert checked == len(ui_names())


def test_ui_and_api_workflows_are_twins(comfy):
    """Each API file is what the editor makes of its UI workflow: same nodes, links and widget values."""
    info = comfy.object_info()
    compared = []
    for name in ui_names():
        ui = load_ui(name + ".json")
        if any(n["type"] not in info and n["type"] not in (TTS_NODE, "Note") for n in ui["nodes"]):
            continue  # the 2024 ComfyUI has no core video nodes
        api = {nid: {"class_type": n["class_type"], "inputs": n["inputs"]} for nid, n in load_api(name + "_api.json").items()}
        assert ui_to_api(ui, info) == api, name
        compared.append(name)
    assert "lipsync_basic" in compared and "lipsync_tts_upscale" in compared, compared


def test_the_tts_workflow_uses_a_current_tts_node():
    """FL Chatterbox TTS (filliptm/ComfyUI_Fill-ChatterBox, registry comfyui_fill-chatterbox): the editor can offer
    to install it (cnr_id), and its audio feeds Match Length."""
    ui = load_ui("lipsync_tts_upscale.json")
    tts = [n for n in ui["nodes"] if n["type"] == TTS_NODE]
    assert len(tts) == 1 and tts[0]["properties"]["cnr_id"] == "comfyui_fill-chatterbox"
    assert not [n for n in ui["nodes"] if n["type"] == "ChatterBoxVoiceTTS"]
    match = next(n for n in ui["nodes"] if n["type"] == "LatentSyncMatchLength")
    audio_link = next(i["link"] for i in match["inputs"] if i["name"] == "audio")
    assert next(link for link in ui["links"] if link[0] == audio_link)[1] == tts[0]["id"]


def test_fps_is_set_in_one_place_and_flows_through_links():
    """Whisper Audio Embed, the mux and Create Video take Match Length's fps output; Match Length takes the loader's
    (its own widget only for a still image)."""
    for name in ui_names():
        ui = load_ui(name + ".json")
        nodes = {n["id"]: n for n in ui["nodes"]}
        links = {link[0]: link for link in ui["links"]}
        match = next(n for n in ui["nodes"] if n["type"] == "LatentSyncMatchLength")
        for node in ui["nodes"]:
            takes_fps = node["type"] in ("LatentSyncWhisperAudioEmbed", "LatentSyncMuxAudio", "CreateVideo") or (
                node["type"] == "LatentSyncFaceAlignCrop" and any(i["name"] == "fps" for i in node["inputs"]))
            if takes_fps:
                fps = next(i for i in node["inputs"] if i["name"] == "fps")
                source = links[fps["link"]]
                assert (source[1], source[2]) == (match["id"], 3), (name, node["type"])  # Match Length's fps
        fps_in = [i for i in match["inputs"] if i["name"] == "fps"]
        loaders = {"LatentSyncLoadVideo", "GetVideoComponents"}
        if any(nodes[n]["type"] in loaders for n in nodes):
            assert fps_in and nodes[links[fps_in[0]["link"]][1]]["type"] in loaders, name
