"""Under load: many queued runs in one ComfyUI process, alternating two models (a 64 px and a 128 px tiny U-Net,
standing for 1.5 and 1.6) with Cancel pressed in some, end with the server's memory back at the level it had once
each model had run (within 5 %), and every run that was not cancelled succeeds.

Host memory is the server's resident set (/proc/PID/status); on a CUDA server the VRAM PyTorch holds is compared
too (from /system_stats). LATENTSYNC_SOAK_RUNS sets the number of runs (default 5: run 3 cancelled, the last two
not; about 55 s on a 2-core CPU, where a run takes 5-9 s; the time grows linearly with the count: 8 runs took about
85 s, the issue's 50 take about 6 minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from workflow_helpers import configure, load_api, nodes_of

RUNS = int(os.environ.get("LATENTSYNC_SOAK_RUNS", "5"))
CANCEL_EVERY = 3  # runs 3, 6, 9, ... are cancelled during sampling
TOLERANCE = 0.05


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def vram_used(comfy) -> int | None:
    """Bytes PyTorch holds on the server's first CUDA device, or None on a CPU server."""
    status, stats = comfy.get("/system_stats")
    device = (stats.get("devices") or [{}])[0] if status == 200 else {}
    if device.get("type") != "cuda":
        return None
    return int(device["torch_vram_total"]) - int(device["torch_vram_free"])


def settled_rss(comfy) -> int:
    """The server's RSS once it is idle (the queue empty), read twice half a second apart, the lower taken."""
    for _ in range(100):
        status, queue = comfy.get("/queue")
        if status == 200 and not queue.get("queue_running") and not queue.get("queue_pending"):
            break
        time.sleep(0.1)
    first = rss_bytes(comfy.proc.pid)
    time.sleep(0.5)
    return min(first, rss_bytes(comfy.proc.pid))


@pytest.fixture(scope="module")
def tiny_speech(comfy) -> str:
    """0.12 s of the test speech (5 output frames): the full-size random SD VAE dominates a CPU run."""
    import av
    import numpy as np

    from media_variants import write_wav
    from workflow_helpers import SHORT_SPEECH_NAME

    with av.open(str(comfy.input_dir / SHORT_SPEECH_NAME)) as src:
        stream = src.streams.audio[0]
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in src.decode(stream)])
        rate = stream.rate
    write_wav(comfy.input_dir / "ls_soak_speech.wav", pcm[: int(0.12 * rate)], rate)
    return "ls_soak_speech.wav"


@pytest.fixture(scope="module")
def second_unet(comfy) -> str:
    """A 128 px copy of the tiny U-Net (same weights; the sidecar sets the face size), like a second release."""
    src = comfy.models_dir / "latentsync" / comfy.model_names["unet"]
    dest = src.parent.parent / "tiny128" / src.name
    dest.parent.mkdir(exist_ok=True)
    shutil.copy(src, dest)
    config = json.loads(src.with_suffix(".json").read_text())
    dest.with_suffix(".json").write_text(json.dumps({**config, "resolution": 128}))
    return f"tiny128/{src.name}"


def test_many_queued_runs_return_memory_to_the_first_runs_level(comfy, second_unet, tiny_speech):
    base = configure(load_api("lipsync_basic_api.json"), comfy, steps=2)
    for nid in nodes_of(base, "LatentSyncLoadAudio"):
        base[nid]["inputs"]["audio"] = tiny_speech
    loader, sampler = nodes_of(base, "LoadLatentSyncModel")[0], nodes_of(base, "LatentSyncSampler")[0]
    levels, vram, outcomes = [], [], []
    for n in range(1, RUNS + 1):
        prompt = json.loads(json.dumps(base))
        prompt[loader]["inputs"]["unet"] = comfy.model_names["unet"] if n % 2 else second_unet
        prompt[sampler]["inputs"]["seed"] = n
        cancel = n % CANCEL_EVERY == 0
        sent = []

        def on_message(msg, cancel=cancel, sent=sent):
            data = msg.get("data") or {}
            if cancel and not sent and msg.get("type") == "progress" and data.get("node") == sampler:
                comfy.interrupt()
                sent.append(data["value"])

        run = comfy.run(prompt, on_message=on_message)
        if cancel and sent:
            assert run.outcome in ("execution_interrupted", "execution_success", "finished"), run.outcome
        else:
            assert run.ok, f"run {n}: {run.outcome}: {run.error()}\n{comfy.log_tail(30)}"
        outcomes.append(run.outcome)
        levels.append(settled_rss(comfy))
        vram.append(vram_used(comfy))
    assert comfy.proc.poll() is None
    assert "execution_interrupted" in outcomes, outcomes  # Cancel really happened
    # The level once each of the two models has run (runs 1 and 2): the first 128 px run grows the allocator's
    # arenas for its larger activations once (measured here: +70 to +170 MiB after run 2, flat afterwards, also
    # before this session's changes), which is not a leak. A leak grows with the runs that follow.
    first = max(levels[:2])
    if levels[-1] > (1 + TOLERANCE) * first:
        # ComfyUI's prompt worker collects garbage only once it has been idle for 10 s (main.py's
        # gc_collect_interval), so a level read right after a run can still hold that run's unreachable cycles (seen
        # once in CI under load: +185 MiB at run 10 only, runs 3-9 flat). Read it again after the collection.
        time.sleep(11)
        levels[-1] = settled_rss(comfy)
    last = min(levels[-2:])  # a leak raises both of the last two levels; a one-off high reading does not
    report = ", ".join(f"{level / 2**20:.0f}" for level in levels)
    # Back to that level: not above it by more than 5 % (falling below is one-time buffers freed).
    assert last <= (1 + TOLERANCE) * first, f"RSS after each run (MiB): {report}"
    if vram[0] is not None:
        base = max(vram[:2])
        assert vram[-1] <= base * (1 + TOLERANCE) + 64 * 2**20, f"VRAM after each run: {vram}"
