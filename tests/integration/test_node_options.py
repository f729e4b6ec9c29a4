"""Node options in the real ComfyUI: NaN/inf numbers are refused by name (ComfyUI's own min/max check lets NaN
through), and the quality preset sets the sampler's steps unless the steps widget was changed."""

from __future__ import annotations

import pytest

from workflow_helpers import configure, load_api, nodes_of


def sampler_ticks(comfy, run, sampler: str) -> list[int]:
    return [d["max"] for d in run.of_type("progress") if d.get("node") == sampler]


@pytest.mark.parametrize("field,value,words", [("guidance", float("nan"), ("guidance", "finite")),
                                               ("guidance", float("inf"), ("guidance", "10.0")),
                                               ("steps", 0, ("steps",))])
def test_sampler_refuses_bad_numbers_before_running(comfy, field, value, words):
    prompt = configure(load_api("lipsync_basic_api.json"), comfy, steps=1)
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    prompt[sampler]["inputs"][field] = value
    status, resp = comfy.queue(prompt)
    assert status == 400 or resp.get("node_errors"), resp
    text = str(resp["node_errors"][sampler]).lower()
    assert all(w in text for w in words), text


def test_quality_preset_sets_steps_unless_the_widget_was_changed(comfy):
    prompt = configure(load_api("lipsync_basic_api.json"), comfy)
    sampler = nodes_of(prompt, "LatentSyncSampler")[0]
    prompt[sampler]["inputs"].update(steps=20, quality="draft")  # steps at its default: the preset's 10 apply
    run = comfy.run(prompt)
    assert run.ok, run.error()
    assert set(sampler_ticks(comfy, run, sampler)) == {10}  # one 16-frame chunk x 10 steps
    prompt[sampler]["inputs"].update(steps=3, seed=2)  # changed from the default: it wins over the preset
    run = comfy.run(prompt)
    assert run.ok, run.error()
    assert set(sampler_ticks(comfy, run, sampler)) == {3}
