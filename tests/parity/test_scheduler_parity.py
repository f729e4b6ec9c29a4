"""DDIM schedule and update step against upstream's DDIMScheduler (scheduler_ddim.json)."""

from __future__ import annotations

import json

import pytest
import torch

from latentsync.pipeline.ddim import DDIMSchedule


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return json.loads((fixtures_dir / "scheduler_ddim.json").read_text())


def test_config_is_upstreams(golden):
    from latentsync.configs import SCHEDULER

    resolved = golden["resolved_config"]
    for key, value in SCHEDULER.items():
        assert resolved[key] == value, key
    assert golden["init_noise_sigma"] == 1.0 and golden["step_check"]["scale_model_input_is_identity"]


def test_timesteps_and_alphas(golden, manifest, check):
    steps_list = manifest["files"]["scheduler_ddim.json"]["generation_params"]["steps"]
    atol = check["scheduler"]["atol"]
    for steps in steps_list:
        want = golden["set_timesteps"][str(steps)]
        schedule = DDIMSchedule(steps)
        assert schedule.timesteps.tolist() == want["timesteps"], steps
        got_alpha = torch.stack([schedule.alphas_cumprod[t] for t in want["timesteps"]])
        assert torch.allclose(got_alpha, torch.tensor(want["alphas_cumprod_at_t"]), atol=atol, rtol=0), steps
        assert [t - schedule.stride for t in want["timesteps"]] == want["prev_timestep"], steps
    schedule = DDIMSchedule(steps_list[0])
    assert abs(float(schedule.final_alpha_cumprod) - golden["final_alpha_cumprod"]) <= atol
    first, last = golden["alphas_cumprod_first_last"]
    assert abs(float(schedule.alphas_cumprod[0]) - first) <= atol and abs(float(schedule.alphas_cumprod[-1]) - last) <= atol


def test_step(golden, manifest, check):
    params = manifest["files"]["scheduler_ddim.json"]["generation_params"]
    shape = params["step_shape"]
    gen = torch.Generator().manual_seed(params["step_seed"])
    x = torch.randn(shape, generator=gen)
    eps = torch.randn(shape, generator=gen)
    step = golden["step_check"]
    assert torch.allclose(x.flatten(), torch.tensor(step["x"]), atol=1e-7), "fixture input not reproduced"
    assert torch.allclose(eps.flatten(), torch.tensor(step["eps"]), atol=1e-7)
    schedule = DDIMSchedule(params["step_num_inference_steps"])
    for t in params["stepped_t"]:
        got = schedule.step(eps, t, x).flatten()
        want = torch.tensor(step["prev_sample_by_t"][str(t)])
        assert torch.allclose(got, want, atol=check["scheduler"]["atol"], rtol=0), t


def test_rejects_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        DDIMSchedule(0)
    with pytest.raises(ValueError, match="steps"):
        DDIMSchedule(1001)
