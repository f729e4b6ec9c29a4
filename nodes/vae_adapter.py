"""ComfyUI's VAE object seen through the library's ``LatentVAE`` protocol (posterior moments, decode).

Core ``VAE.encode`` returns only the posterior mode; LatentSync needs mean and log-variance so that the sampler
can draw posterior samples in upstream's random order. So this adapter runs the first-stage model's encoder and
quant conv itself, under ComfyUI's memory manager, in batches sized from free memory.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from . import comfy_compat as cc

log = logging.getLogger(__name__)

MAX_BATCH = 16


class ComfyVAE:
    """Adapter: ``encode_moments`` / ``decode`` on a ComfyUI ``comfy.sd.VAE`` (SD 1.x KL autoencoder)."""

    def __init__(self, vae: Any, *, manage_memory: bool = True):
        model = getattr(vae, "first_stage_model", None)
        needed = ("encoder", "decoder", "quant_conv", "post_quant_conv")
        if model is None or not all(hasattr(model, n) for n in needed):
            raise ValueError(
                "vae: LatentSync needs the Stable Diffusion 1.x VAE (sd-vae-ft-mse); the connected VAE is a "
                f"{type(model).__name__} without encoder/quant_conv. Load sd-vae-ft-mse with LoadLatentSyncModel "
                "or the core Load VAE node."
            )
        if getattr(vae, "latent_channels", 4) != 4 or getattr(vae, "downscale_ratio", 8) != 8:
            raise ValueError("vae: LatentSync needs a 4-channel, 8x downscaling VAE (sd-vae-ft-mse).")
        self.vae = vae
        self.model = model
        # False when the caller already loaded the VAE together with other models it keeps using: loading it
        # again here could make ComfyUI evict those (e.g. the U-Net in the streaming node's loop).
        self.manage_memory = manage_memory

    @property
    def device(self) -> torch.device:
        return torch.device(self.vae.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.vae_dtype

    def _run(self, x: torch.Tensor, fn, estimate) -> torch.Tensor:
        """Apply ``fn`` to batches of ``x`` on the VAE device; halve the batch on out-of-memory."""
        # ComfyUI's estimates are per batch item (they read only the spatial size of the shape).
        per_item = max(1, int(estimate(tuple(x.shape), self.dtype)))
        if self.manage_memory:
            cc.load_models([self.vae.patcher], memory_required=per_item)
        batch = MAX_BATCH
        if self.device.type != "cpu":
            batch = max(1, min(MAX_BATCH, cc.free_memory_bytes(self.device) // per_item))
        while True:
            try:
                out = [fn(part.to(self.device, self.dtype)).float() for part in x.split(batch)]
                return torch.cat(out)
            except cc.oom_exceptions():
                if batch == 1:
                    raise
                batch = max(1, batch // 2)
                log.warning("LatentSync VAE: out of memory, retrying with batch %d", batch)
                cc.soft_empty_cache()

    @torch.no_grad()
    def encode_moments(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,3,H,W) in [-1,1] -> (mean, logvar) each (N,4,H/8,W/8), float32 on the VAE device."""

        def moments(x: torch.Tensor) -> torch.Tensor:
            return self.model.quant_conv(self.model.encoder(x))

        out = self._run(pixels, moments, self.vae.memory_used_encode)
        mean, logvar = out.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # the clamp diffusers' DiagonalGaussianDistribution applies

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled (N,4,h,w) latents -> (N,3,8h,8w) pixels in about [-1,1], float32 on the VAE device."""

        def run(z: torch.Tensor) -> torch.Tensor:
            return self.model.decoder(self.model.post_quant_conv(z))

        return self._run(latents, run, self.vae.memory_used_decode)
