"""ComfyUI's cache keeps what did not change: a second queue of the graph with another seed runs only the sampler
and what follows it (a loader whose IS_CHANGED raised used to re-run the whole graph on every queue)."""

from __future__ import annotations

import json

from workflow_helpers import configure, load_api, nodes_of


def test_new_seed_reruns_only_the_sampler_and_after(comfy):
    prompt = configure(load_api("lipsync_basic_api.json"), comfy, steps=1)
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    after = {nid for nid in prompt if nid != sampler and any(
        value == [sampler, 0] for value in prompt[nid]["inputs"].values())}
    runs = []
    for seed in (9101, 9102):  # seeds no other test queues, so the first run really samples
        queued = json.loads(json.dumps(prompt))
        queued[sampler]["inputs"]["seed"] = seed
        run = comfy.run(queued)
        assert run.ok, f"{run.outcome}: {run.error()}\n{comfy.log_tail(40)}"
        runs.append(set(run.executed_nodes()))
    assert sampler in runs[0]  # (what ran before it may be cached already from earlier tests on this server)
    # the sampler's consumers (decode + composite) and theirs (the muxer) run again; nothing before the sampler does
    assert runs[1] - {sampler} - after == set(nodes_of(prompt, "LatentSyncMuxAudio")), sorted(runs[1])
    assert sampler in runs[1]
