"""The U-Net training's noise, forward diffusion, one-step x0 and pixel losses (TREPA), as upstream computes them.

Facts from upstream's ``scripts/train_unet.py`` / ``latentsync/utils/util.py`` / ``latentsync/trepa/loss.py``:

* mixed noise (https://arxiv.org/abs/2305.10474): a per-video noise frame repeated over all frames, scaled by
  ``sqrt(a^2 / (1 + a^2))``, plus per-frame noise scaled by ``sqrt(1 / (1 + a^2))`` (two ``randn_like`` draws in
  that order); without it, one noise frame repeated (https://arxiv.org/abs/2308.09716);
* ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with diffusers' scaled-linear ``abar`` (upstream's scheduler);
* x0 in one step: ``(x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)`` (epsilon prediction, no clipping);
* TREPA: both videos resized to 224 (bicubic), mapped [-1, 1] -> [0, 1] and clamped, embedded by a frozen video
  net's ``forward_features``, unit-normalised, mean squared difference.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..configs import SCHEDULER


def alphas_cumprod(config: dict = SCHEDULER) -> torch.Tensor:
    """abar_t (float32, T values) of the training scheduler (scaled-linear betas)."""
    if config.get("beta_schedule", "scaled_linear") != "scaled_linear":
        raise ValueError(f"scheduler beta_schedule {config['beta_schedule']!r} is not supported (scaled_linear only)")
    t = int(config["num_train_timesteps"])
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, t, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def training_noise(like: torch.Tensor, mixed: bool, alpha: float) -> torch.Tensor:
    """Noise for latents ``like`` (B, C, F, h, w), drawn from the global generator in upstream's order."""
    frames = like.shape[2]
    if mixed:
        shared = torch.randn_like(like) * (alpha**2 / (1 + alpha**2)) ** 0.5
        shared = shared[:, :, 0:1].repeat(1, 1, frames, 1, 1)
        own = torch.randn_like(like) * (1 / (1 + alpha**2)) ** 0.5
        return own + shared
    return torch.randn_like(like)[:, :, 0:1].repeat(1, 1, frames, 1, 1)


def _per_sample(values: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[timesteps]`` shaped (B, 1, 1, 1, 1) in ``like``'s dtype and device."""
    picked = values.to(like.device)[timesteps.to(like.device)].to(like.dtype)
    return picked.reshape(-1, *([1] * (like.dim() - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Forward diffusion to ``timesteps`` (one per sample), as diffusers' ``add_noise``."""
    a = abar.to(device=x0.device, dtype=x0.dtype)
    t = timesteps.to(x0.device)
    sqrt_a = (a[t] ** 0.5).flatten().reshape(-1, *([1] * (x0.dim() - 1)))
    sqrt_1ma = ((1 - a[t]) ** 0.5).flatten().reshape(-1, *([1] * (x0.dim() - 1)))
    return sqrt_a * x0 + sqrt_1ma * noise


def one_step_x0(eps: torch.Tensor, timesteps: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """The clean latents implied by the predicted noise ``eps`` at ``timesteps`` (upstream's one_step_sampling)."""
    a = _per_sample(abar, timesteps, eps)
    return (x_t - (1 - a) ** 0.5 * eps) / a**0.5


def trepa_loss(features: Callable[[torch.Tensor], torch.Tensor], fake: torch.Tensor, real: torch.Tensor,
               frames: int, size: int = 224) -> torch.Tensor:
    """TREPA of frame batches (B*F, 3, H, W) in [-1, 1]; ``features`` maps (B, 3, F, S, S) in [0, 1] to (B, D)."""

    def embed(x: torch.Tensor) -> torch.Tensor:
        """Resize, map to [0, 1], embed, unit-normalise."""
        x = F.interpolate(x, size=(size, size), mode="bicubic")
        b = x.shape[0] // frames
        x = x.reshape(b, frames, *x.shape[1:]).permute(0, 2, 1, 3, 4)
        return F.normalize(features((x / 2 + 0.5).clamp(0, 1)), p=2, dim=1)

    return F.mse_loss(embed(fake.clone()), embed(real.clone()))
