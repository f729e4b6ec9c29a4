"""Deterministic DDIM (eta = 0) with upstream's scheduler config, numerically as diffusers' DDIMScheduler.

Only what LatentSync inference uses: "scaled_linear" betas, "leading" timestep spacing, epsilon prediction,
no clipping or thresholding, ``set_alpha_to_one=False``. ``scale_model_input`` is the identity and
``init_noise_sigma`` is 1, so neither appears here.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..configs import SCHEDULER


class DDIMSchedule:
    """Timesteps and alphas for one number of inference steps; ``step`` maps x_t to x_{t-1}."""

    def __init__(self, num_inference_steps: int, config: Mapping[str, Any] = SCHEDULER):
        if num_inference_steps < 1:
            raise ValueError(f"steps must be at least 1, got {num_inference_steps}")
        unsupported = {
            "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon",
            "timestep_spacing": "leading",
            "clip_sample": False,
        }
        for key, want in unsupported.items():
            if config.get(key, want) != want:
                raise ValueError(f"scheduler {key}={config[key]!r} is not supported (only {want!r})")
        train_steps = int(config["num_train_timesteps"])
        if num_inference_steps > train_steps:
            raise ValueError(f"steps must be at most {train_steps}, got {num_inference_steps}")

        sqrt_betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, train_steps, dtype=torch.float32)
        self.alphas_cumprod = torch.cumprod(1.0 - sqrt_betas**2, dim=0)
        self.final_alpha_cumprod = (
            torch.tensor(1.0) if config.get("set_alpha_to_one", False) else self.alphas_cumprod[0]
        )
        self.stride = train_steps // num_inference_steps
        offset = int(config.get("steps_offset", 0))
        self.timesteps = torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.int64) * self.stride + offset
        self.num_inference_steps = num_inference_steps

    def alpha_at(self, t: int) -> torch.Tensor:
        return self.alphas_cumprod[t] if t >= 0 else self.final_alpha_cumprod

    def step(self, eps: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM update (eta = 0), in the sample's dtype as diffusers computes it."""
        t = int(t)
        alpha_t = self.alphas_cumprod[t]
        alpha_prev = self.alpha_at(t - self.stride)
        x0 = (sample - (1 - alpha_t) ** 0.5 * eps) / alpha_t**0.5
        return alpha_prev**0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps
