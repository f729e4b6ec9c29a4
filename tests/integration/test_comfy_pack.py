"""The pack inside a real ComfyUI (CPU): node listing, the shipped API workflows, progress, Cancel, model reuse,
and the offline message. Tiny random models in the real file formats; see conftest.py and tiny_models.py."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import pytest
import numpy as np
from media_variants import write_wav
from PIL import Image
from workflow_helpers import (
    CLIP_FPS,
    FRAMES,
    NO_FACE_NAME,
    SHORT_FRAMES,
    SHORT_SPEECH_NAME,
    VIDEO_NAME,
    configure,
    load_api,
    nodes_of,
)

NODE_IDS = [
    "LoadLatentSyncModel", "LatentSyncWhisperAudioEmbed", "LatentSyncFaceAlignCrop", "LatentSyncMaskedVAEEncode",
    "LatentSyncSampler", "LatentSyncVAEDecodeComposite", "LatentSyncMuxAudio", "LatentSyncMatchLength",
    "LatentSyncLoadVideo", "LatentSyncLoadAudio", "LatentSyncVideoFile",
]


def probe_mp4(path: str) -> tuple[int, Fraction, float, tuple[int, int]]:
    """(video frames, frame rate, audio seconds, (width, height)) of an mp4, decoded with PyAV."""
    with av.open(path) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        rate = video.average_rate
        size = (video.codec_context.width, video.codec_context.height)
    with av.open(path) as container:
        audio = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(audio))
        seconds = samples / audio.rate
    return frames, Fraction(rate), seconds, size


def mp4_of(comfy, run, node_id: str) -> str:
    out = run.outputs(node_id)
    items = out.get("latentsync_video") or out.get("images") or []
    assert items, f"node {node_id} reported no video: {out}"
    item = items[0]
    base = comfy.output_dir if item.get("type", "output") == "output" else comfy.temp_dir
    path = os.path.join(base, item.get("subfolder", ""), item["filename"])
    assert os.path.isfile(path), path
    return path


def assert_ok(comfy, run):
    assert run.ok, f"{run.outcome}: {run.error()}\n{comfy.log_tail(40)}"


def save_composite(prompt: dict, node_id: str, prefix: str) -> None:
    """Add a SaveImage of VAE Decode Composite's frames to ``prompt`` as node ``node_id``."""
    decode = nodes_of(prompt, "LatentSyncVAEDecodeComposite")[0]
    prompt[node_id] = {"class_type": "SaveImage", "inputs": {"images": [decode, 0], "filename_prefix": prefix}}


def assert_saved_frames_equal(comfy, run, node_id: str, source_name: str, count: int) -> None:
    """Every frame the SaveImage node wrote is bit-identical to the input image ``source_name``."""
    source = np.asarray(Image.open(os.path.join(comfy.input_dir, source_name)).convert("RGB"))
    saved = run.outputs(node_id)["images"]
    assert len(saved) == count
    for item in saved:
        frame = np.asarray(Image.open(os.path.join(comfy.output_dir, item["subfolder"], item["filename"])).convert("RGB"))
        assert np.array_equal(frame, source), item["filename"]


def test_every_node_is_listed_with_docs(comfy):
    info = comfy.object_info()
    for node_id in NODE_IDS:
        assert node_id in info, f"{node_id} missing from /object_info"
        node = info[node_id]
        assert node["category"].startswith("LatentSync/"), (node_id, node["category"])
        assert len(node.get("description", "")) > 40, node_id
        for section in ("required", "optional"):
            for name, spec in (node["input"].get(section) or {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
        if "output_tooltips" in node:  # ComfyUI >= mid 2024 publishes them
            assert len(node["output_tooltips"]) == len(node["output"]) and all(node["output_tooltips"])


def test_basic_workflow_writes_synced_mp4_with_progress(comfy):
    steps = 2
    prompt = configure(load_api("lipsync_basic_api.json"), comfy, steps=steps, short=False)
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    mp4 = mp4_of(comfy, run, nodes_of(prompt, "LatentSyncMuxAudio")[0])
    frames, rate, audio_seconds, size = probe_mp4(mp4)
    assert frames == FRAMES
    assert rate == CLIP_FPS
    with av.open(mp4) as container:  # the prompt travels in the file's metadata, as core SaveVideo does
        saved = json.loads(container.metadata["prompt"])
    assert saved[nodes_of(prompt, "LatentSyncSampler")[0]]["class_type"] == "LatentSyncSampler"
    assert size == (256, 256)
    assert abs(audio_seconds - FRAMES / CLIP_FPS) <= 1024 / 16000 + 1e-6  # within one AAC frame
    face_align = nodes_of(prompt, "LatentSyncFaceAlignCrop")[0]
    report = run.outputs(face_align)["latentsync_faces"][0]
    assert report["frames"] == FRAMES and report["faces_found"] == FRAMES, report
    # The sampler's progress bar counts chunks x steps (16-frame chunks), ending at the total.
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    ticks = [d for d in run.of_type("progress") if d.get("node") == sampler]
    total = -(-FRAMES // 16) * steps
    assert ticks and all(d["max"] == total for d in ticks), ticks
    assert [d["value"] for d in ticks] == list(range(1, total + 1))


def test_model_is_loaded_once_across_runs(comfy):
    first = comfy.run(configure(load_api("lipsync_basic_api.json"), comfy, steps=1, seed=11))
    assert_ok(comfy, first)
    again = configure(load_api("lipsync_basic_api.json"), comfy, steps=1, seed=12)
    second = comfy.run(again)
    assert_ok(comfy, second)
    loader = nodes_of(again, "LoadLatentSyncModel")[0]
    sampler = nodes_of(again, "LatentSyncSampler")[0]
    assert loader in second.cached_nodes() and loader not in second.executed_nodes()
    assert sampler in second.executed_nodes()


def test_cancel_during_sampling_then_next_prompt_runs(comfy):
    # Two 16-frame chunks x 200 steps leave room for a late Cancel (the server runs one compute thread so its
    # event loop is not starved, see conftest); Cancel is re-sent every 25 ticks in case one request raced.
    steps = 200
    prompt = configure(load_api("lipsync_basic_api.json"), comfy, steps=steps, seed=21, short=False)
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    sent = []

    def on_message(msg):
        data = msg.get("data") or {}
        if msg.get("type") == "progress" and data.get("node") == sampler and data["value"] >= len(sent) * 25:
            comfy.interrupt()
            sent.append(data["value"])

    run = comfy.run(prompt, on_message=on_message)
    assert sent, "the sampler never reported progress"
    assert run.outcome == "execution_interrupted", run.outcome
    ticks = [d["value"] for d in run.of_type("progress") if d.get("node") == sampler]
    total = -(-FRAMES // 16) * steps
    assert max(ticks) < total, f"the sampler ran to its end; cancel sent at ticks {sent}"
    follow = comfy.run(configure(load_api("lipsync_basic_api.json"), comfy, steps=1, seed=22))
    assert_ok(comfy, follow)


def test_still_image_workflow(comfy):
    prompt = configure(load_api("lipsync_still_image_api.json"), comfy, steps=1)
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    frames, rate, audio_seconds, _ = probe_mp4(mp4_of(comfy, run, nodes_of(prompt, "LatentSyncMuxAudio")[0]))
    assert frames == SHORT_FRAMES and rate == 25
    assert abs(audio_seconds - SHORT_FRAMES / 25) <= 1024 / 16000 + 1e-6


def test_frames_without_a_face_pass_through_unchanged(comfy):
    prompt = configure(load_api("lipsync_still_image_api.json"), comfy, steps=1)
    for nid in nodes_of(prompt, "LoadImage"):
        prompt[nid]["inputs"]["image"] = NO_FACE_NAME
    save_composite(prompt, "90", "test/noface")
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    report = run.outputs(nodes_of(prompt, "LatentSyncFaceAlignCrop")[0])["latentsync_faces"][0]
    assert report["faces_found"] == 0 and report["missing_count"] == SHORT_FRAMES, report
    assert_saved_frames_equal(comfy, run, "90", NO_FACE_NAME, SHORT_FRAMES)


def test_tts_upscale_workflow(comfy):
    prompt = configure(load_api("lipsync_tts_upscale_api.json"), comfy, steps=1)
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    frames, rate, audio_seconds, size = probe_mp4(mp4_of(comfy, run, nodes_of(prompt, "LatentSyncMuxAudio")[0]))
    assert frames == SHORT_FRAMES and rate == CLIP_FPS
    assert abs(audio_seconds - SHORT_FRAMES / CLIP_FPS) <= 1024 / 16000 + 1e-6
    assert size == (512, 512)  # the 2x upscaler ran on the composited frames


def test_core_video_nodes_workflow(comfy):
    info = comfy.object_info()
    needed = ("LoadVideo", "GetVideoComponents", "LoadAudio", "CreateVideo", "SaveVideo")
    if not all(n in info for n in needed):
        pytest.skip("this ComfyUI has no core video/audio nodes (before v0.3.31)")
    prompt = configure(load_api("lipsync_core_video_api.json"), comfy, steps=1)
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    save = nodes_of(prompt, "SaveVideo")[0]
    item = run.outputs(save)["images"][0]
    frames, rate, audio_seconds, _ = probe_mp4(os.path.join(comfy.output_dir, item.get("subfolder", ""), item["filename"]))
    assert frames == SHORT_FRAMES and rate == CLIP_FPS
    assert abs(audio_seconds - SHORT_FRAMES / CLIP_FPS) <= 1024 / 16000 + 1e-6


def test_streaming_video_file_node(comfy):
    names = comfy.model_names
    prompt = {
        "1": {"class_type": "LoadLatentSyncModel",
              "inputs": {"unet": names["unet"], "whisper": names["whisper"], "vae": names["vae"], "version": "auto",
                         "dtype": "fp32", "download": False}},
        "2": {"class_type": "LatentSyncVideoFile",
              "inputs": {"model": ["1", 0], "vae": ["1", 1], "video": VIDEO_NAME, "audio": SHORT_SPEECH_NAME,
                         "seed": 3, "steps": 1, "guidance": 1.5, "deepcache": False, "detector": "auto",
                         "face_index": -1, "length_policy": "pingpong", "filename_prefix": "test/stream", "crf": 23}},
    }
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    frames, rate, audio_seconds, _ = probe_mp4(mp4_of(comfy, run, "2"))
    assert frames == SHORT_FRAMES and rate == CLIP_FPS
    assert abs(audio_seconds - SHORT_FRAMES / CLIP_FPS) <= 1024 / 16000 + 1e-6


def test_missing_model_files_give_one_offline_message(comfy):
    prompt = {
        "1": {"class_type": "LoadLatentSyncModel",
              "inputs": {"unet": "1.6/latentsync_unet.pt", "whisper": "whisper/tiny.pt",
                         "vae": "sd-vae-ft-mse.safetensors", "version": "auto", "dtype": "auto", "download": True}},
        "2": {"class_type": "LatentSyncVideoFile",
              "inputs": {"model": ["1", 0], "vae": ["1", 1], "video": "ls_test_clip.mp4", "audio": "ls_test_speech.wav",
                         "seed": 3, "steps": 1, "guidance": 1.5, "deepcache": False, "detector": "auto",
                         "face_index": -1, "length_policy": "pingpong", "filename_prefix": "test/never", "crf": 23}},
    }
    run = comfy.run(prompt)  # the loader checks its files first thing (ComfyUI would repeat a queue-time message)
    errors = run.of_type("execution_error")
    assert not run.ok and [e["node_id"] for e in errors] == ["1"], run.outcome
    text = errors[0]["exception_message"]
    assert "LatentSync model files are missing" in text and "HF_HUB_OFFLINE" in text
    assert not run.executed_nodes() or run.executed_nodes() == ["1"]
    for expected in ("1.6/latentsync_unet.pt", "whisper/tiny.pt", "vae/sd-vae-ft-mse.safetensors",
                     "huggingface.co/ByteDance/LatentSync-1.6", "huggingface.co/stabilityai/sd-vae-ft-mse"):
        assert expected in text.replace("\\", "/"), expected


def test_keep_silent_mouth_leaves_silent_frames_untouched(comfy):
    """With keep_silent_mouth on and silent audio, nothing is generated and every frame comes back as it went in."""
    silent = comfy.allowed_dir / "silence.wav"  # a path field may read the folder the owner allowed
    write_wav(silent, np.zeros(16000 // 4, np.int16), 16000)
    prompt = configure(load_api("lipsync_still_image_api.json"), comfy, steps=1)
    for nid in nodes_of(prompt, "LatentSyncLoadAudio"):
        prompt[nid]["inputs"]["path"] = str(silent)
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    prompt[sampler]["inputs"]["keep_silent_mouth"] = True
    save_composite(prompt, "91", "test/silent")
    run = comfy.run(prompt)
    assert_ok(comfy, run)
    report = run.outputs(nodes_of(prompt, "LatentSyncFaceAlignCrop")[0])["latentsync_faces"][0]
    assert report["faces_found"] == report["frames"] > 0, report  # faces were there: only the silence kept them
    image = prompt[nodes_of(prompt, "LoadImage")[0]]["inputs"]["image"]
    assert_saved_frames_equal(comfy, run, "91", image, report["frames"])
