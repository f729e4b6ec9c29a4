"""The sampler's speed options through the real executor: batch_chunks and compile change nothing but speed, and a
compiled U-Net is made once per session and shape, then reused by later queue runs.

The server runs with TORCH_COMPILE_DISABLE=1 (see conftest.py): inductor on this CPU takes minutes for the tiny
U-Net, so torch.compile hands back the eager functions, while everything the node does for compile=True still
runs (the CompiledUNet wrapper, its fixed batch with padded chunk groups, its cache on the model).
"""

from __future__ import annotations

import os
import wave

import numpy as np
from media_variants import write_wav
from safetensors.torch import load_file
from workflow_helpers import FRAMES, SPEECH_NAME, VIDEO_NAME, configure, load_api, nodes_of

COMPILE_LOG = "LatentSync: compiling the U-Net for"


def long_speech(comfy, path) -> None:
    """The 0.72 s test speech twice: 1.44 s -> 38 frames, i.e. two full 16-frame chunks and a 6-frame tail."""
    with wave.open(str(comfy.input_dir / SPEECH_NAME), "rb") as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    write_wav(path, np.tile(samples, 2), rate)


def sampled_latent(comfy, prompt: dict, *, seed: int, compile: bool, batch_chunks: int):
    """Run the graph up to the sampler, its LATENT saved by core SaveLatent; returns (samples, log lines)."""
    prompt = {nid: dict(node, inputs=dict(node["inputs"])) for nid, node in prompt.items()}
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    prompt[sampler]["inputs"].update(seed=seed, compile=compile, batch_chunks=batch_chunks)
    prefix = f"test/speed_{seed}_{int(compile)}_{batch_chunks}"
    prompt["90"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": prefix}}
    run = comfy.run(prompt)
    assert run.ok, f"{run.outcome}: {run.error()}\n{comfy.log_tail(40)}"
    assert sampler in run.executed_nodes()
    item = run.outputs("90")["latents"][0]
    return load_file(os.path.join(comfy.output_dir, item["subfolder"], item["filename"]))["latent_tensor"]


def rel_l2(got, want) -> float:
    return float((got - want).norm() / want.norm())


def test_batch_chunks_and_compile_give_the_same_latents(comfy):
    speech = comfy.allowed_dir / "speech_long.wav"  # path fields read only where the server's owner allows
    long_speech(comfy, speech)
    prompt = configure(load_api("lipsync_basic_api.json"), comfy, steps=2)
    for nid in nodes_of(prompt, "LatentSyncLoadAudio"):
        prompt[nid]["inputs"]["path"] = str(speech)
    for nid in nodes_of(prompt, "LatentSyncVAEDecodeComposite") + nodes_of(prompt, "LatentSyncMuxAudio"):
        del prompt[nid]  # only the latents are compared
    before = len(comfy.log_path.read_text(errors="replace"))

    plain = sampled_latent(comfy, prompt, seed=5, compile=False, batch_chunks=1)
    assert plain.shape[0] == 38  # two full chunks (one group of 2) and a tail
    # batch_chunks alone is compared with one chunk per call in tests/unit/test_fast_paths.py; here both options
    # at once go through the node and the executor
    compiled = sampled_latent(comfy, prompt, seed=5, compile=True, batch_chunks=2)
    assert rel_l2(compiled, plain) < 1e-4
    # another seed re-runs the sampler: the wrapper cached on the model is reused, not made (compiled) again
    sampled_latent(comfy, prompt, seed=6, compile=True, batch_chunks=2)
    log = comfy.log_path.read_text(errors="replace")[before:]
    assert "torch.compile failed" not in log, comfy.log_tail(40)
    if "Not compiling the U-Net" in log:  # no C++ compiler here: the node ran the plain U-Net, as it says
        assert COMPILE_LOG not in log
    else:
        assert log.count(COMPILE_LOG) == 1, comfy.log_tail(40)


def decoded_frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)


def test_video_file_node_with_speed_options_writes_the_same_video(comfy):
    """20 frames: one full chunk, which a compiled U-Net with batch_chunks=2 pads to a pair, and a tail."""
    names = comfy.model_names
    loader = {"class_type": "LoadLatentSyncModel",
              "inputs": {"unet": names["unet"], "whisper": names["whisper"], "vae": names["vae"], "version": "auto",
                         "dtype": "fp32", "download": False}}
    paths = []
    for compile, batch_chunks in ((False, 1), (True, 2)):
        prompt = {"1": loader, "2": {"class_type": "LatentSyncVideoFile", "inputs": {
            "model": ["1", 0], "vae": ["1", 1], "video": VIDEO_NAME, "audio": SPEECH_NAME, "seed": 3, "steps": 2,
            "guidance": 1.5, "deepcache": True, "detector": "auto", "face_index": -1, "length_policy": "pingpong",
            "filename_prefix": f"test/stream_speed_{batch_chunks}", "crf": 0, "compile": compile,
            "batch_chunks": batch_chunks}}}
        run = comfy.run(prompt)
        assert run.ok, f"{run.outcome}: {run.error()}\n{comfy.log_tail(40)}"
        item = run.outputs("2")["latentsync_video"][0]
        paths.append(os.path.join(comfy.output_dir, item.get("subfolder", ""), item["filename"]))
    plain, fast = (decoded_frames(p) for p in paths)
    assert plain.shape == fast.shape and plain.shape[0] == FRAMES
    # crf 0 (lossless): lossy H.264 turns float-rounding flips of single pixels into different encoder decisions
    diff = float(np.abs(plain - fast).mean())
    assert diff < 0.01, diff  # same frames up to float rounding (a few pixels one step apart)
