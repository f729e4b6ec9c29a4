"""One U-Net training step as upstream's ``scripts/train_unet.py`` computes it (stage1, stage2, stage2_efficient).

Batch (B videos of F frames, pixels in [-1, 1]) -> three VAE posterior samples (ground truth, masked, reference;
global-generator draws in that order) -> scaled latents -> training noise and one timestep per video -> the
U-Net's noise prediction on ``cat(x_t, mask, masked, reference)`` -> latent MSE. With pixel supervision, x0 in one
step is decoded by the (frozen) VAE and scored by the SyncNet loss (lower half, resized to SyncNet's resolution),
LPIPS on the lower half and TREPA; the weighted sum is the loss. Random draws, order and formulas are upstream's,
so a step with the same weights, batch and generator state gives upstream's losses and gradients.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..pipeline.vae import to_unet_latents, to_vae_latents
from .sync_loss import sync_loss
from .unet_losses import add_noise, one_step_x0, trepa_loss, training_noise


@dataclass(frozen=True)
class StepSettings:
    """What one step reads from the config (upstream's key names)."""

    num_frames: int
    resolution: int
    pixel_space_supervise: bool = False
    use_syncnet: bool = False
    recon_loss_weight: float = 1.0
    sync_loss_weight: float = 0.05
    perceptual_loss_weight: float = 0.1
    trepa_loss_weight: float = 10.0
    use_mixed_noise: bool = True
    mixed_noise_alpha: float = 1.0
    num_train_timesteps: int = 1000
    syncnet_resolution: int = 256
    syncnet_lower_half: bool = True


@dataclass
class LossNets:
    """The frozen networks of the losses: the VAE (diffusers AutoencoderKL API), SyncNet, LPIPS, TREPA features."""

    vae: nn.Module
    syncnet: nn.Module | None = None
    lpips: nn.Module | None = None
    trepa_features: Callable[[torch.Tensor], torch.Tensor] | None = None
    syncnet_geometry: tuple[int, bool] | None = None  # SyncNet's data.resolution and lower_half


@dataclass
class StepPrecision:
    """How a step computes: autocast dtype (None: off), the dtype of the frozen nets' inputs, the grad scaler."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    frozen_dtype: torch.dtype = torch.float32
    scaler: torch.amp.GradScaler | None = None

    def context(self) -> contextlib.AbstractContextManager:
        """The U-Net forward's autocast context."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


@dataclass(frozen=True)
class Draws:
    """A step's random numbers given from outside (tests): posterior noise of gt / masked / ref, noise, timesteps."""

    gt_eps: torch.Tensor
    masked_eps: torch.Tensor
    ref_eps: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


@dataclass
class StepLosses:
    """The step's weighted total (with graph) and its parts (floats, unweighted)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def select_trainable(unet: nn.Module, use_motion_module: bool, trainable_modules: Sequence[str]) -> list[str]:
    """Upstream's rule: with motion modules only parameters whose name contains one of ``trainable_modules``
    train, otherwise all; sets requires_grad and returns the trainable names."""
    if use_motion_module:
        unet.requires_grad_(False)
        for name, param in unet.named_parameters():
            if any(m in name for m in trainable_modules):
                param.requires_grad_(True)
    else:
        unet.requires_grad_(True)
    return [n for n, p in unet.named_parameters() if p.requires_grad]


def _posterior_sample(vae: nn.Module, pixels: torch.Tensor, dtype: torch.dtype, eps: torch.Tensor | None) -> torch.Tensor:
    """One draw from the VAE posterior of (N, 3, H, W) pixels (diffusers' ``latent_dist.sample()``)."""
    dist = vae.encode(pixels.to(dtype)).latent_dist
    if eps is None:
        eps = torch.randn(dist.mean.shape, device=dist.mean.device, dtype=dist.mean.dtype)
    return dist.mean + dist.std * eps.to(dist.mean.device, dist.mean.dtype)


def _video(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B*F, C, h, w) -> (B, C, F, h, w)."""
    return x.reshape(-1, frames, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, h, w) -> (B*F, C, h, w)."""
    return x.permute(0, 2, 1, 3, 4).reshape(-1, x.shape[1], *x.shape[3:])


def compute_losses(unet: nn.Module, nets: LossNets, batch: Mapping[str, torch.Tensor], s: StepSettings,
                   abar: torch.Tensor, precision: StepPrecision, record: dict[str, Any] | None = None,
                   draws: Draws | None = None) -> StepLosses:
    """The step's forward: losses with graph. ``record``: filled with the draws and predictions when given;
    ``draws``: use these random numbers instead of drawing from the global generator."""
    dev, f, fdt = precision.device, s.num_frames, precision.frozen_dtype
    gt = batch["gt_pixel_values"].to(dev).flatten(0, 1)
    masked = batch["masked_pixel_values"].to(dev).flatten(0, 1)
    masks = batch["masks"].to(dev, torch.float32).flatten(0, 1)
    ref = batch["ref_pixel_values"].to(dev).flatten(0, 1)
    with torch.no_grad():
        gt_lat = _posterior_sample(nets.vae, gt, fdt, None if draws is None else draws.gt_eps)
        masked_lat = _posterior_sample(nets.vae, masked, fdt, None if draws is None else draws.masked_eps)
        ref_lat = _posterior_sample(nets.vae, ref, fdt, None if draws is None else draws.ref_eps)
    masks = F.interpolate(masks, size=s.resolution // 8)
    gt_lat, masked_lat, ref_lat = (_video(to_unet_latents(x), f) for x in (gt_lat, masked_lat, ref_lat))
    masks = _video(masks, f)
    if draws is None:
        noise = training_noise(gt_lat, s.use_mixed_noise, s.mixed_noise_alpha)
        timesteps = torch.randint(0, s.num_train_timesteps, (gt_lat.shape[0],), device=gt_lat.device).long()
    else:
        noise, timesteps = draws.noise.to(gt_lat.device, gt_lat.dtype), draws.timesteps.to(gt_lat.device)
    noisy = add_noise(gt_lat, noise, timesteps, abar)
    unet_input = torch.cat([noisy, masks.to(noisy.dtype), masked_lat, ref_lat], dim=1)
    audio = batch.get("audio_embeds")
    audio = None if audio is None else audio.to(dev, fdt)
    with precision.context():
        pred = unet(unet_input, timesteps, audio)
    parts: dict[str, float] = {}
    zero = torch.zeros((), device=dev)
    recon = F.mse_loss(pred.float(), noise.float()) if s.recon_loss_weight != 0 else zero
    sync = lp = tr = zero
    if record is not None:
        record.update(timesteps=timesteps, noise=noise, pred_noise=pred.detach())
    if s.pixel_space_supervise or s.use_syncnet:
        x0 = one_step_x0(pred, timesteps, noisy, abar)
        pixels = nets.vae.decode(to_vae_latents(_frames(x0)).to(fdt)).sample if s.pixel_space_supervise else None
        if pixels is not None and s.perceptual_loss_weight != 0:
            h = pixels.shape[2] // 2
            lp = nets.lpips(pixels[:, :, h:, :].float(), gt[:, :, h:, :].float()).mean()
        if pixels is not None and s.trepa_loss_weight != 0:
            tr = trepa_loss(nets.trepa_features, pixels, gt.to(pixels.dtype), f)
        if s.use_syncnet:
            if pixels is not None:
                if s.resolution != s.syncnet_resolution:
                    pixels = F.interpolate(pixels, size=(s.syncnet_resolution, s.syncnet_resolution), mode="bicubic")
                sync_in = pixels.reshape(-1, f * pixels.shape[1], *pixels.shape[2:])
            else:
                sync_in = x0.permute(0, 2, 1, 3, 4).reshape(x0.shape[0], -1, *x0.shape[3:])
            if s.syncnet_lower_half:
                sync_in = sync_in[:, :, sync_in.shape[2] // 2:, :]
            vision, audio_emb = nets.syncnet(sync_in, batch["mel"].to(dev, sync_in.dtype))
            ones = torch.ones((sync_in.shape[0], 1), device=dev)
            sync = sync_loss(vision.float(), audio_emb.float(), ones)
    loss = (recon * s.recon_loss_weight + sync * s.sync_loss_weight + lp * s.perceptual_loss_weight
            + tr * s.trepa_loss_weight)
    parts.update({k: float(v.detach()) for k, v in (("recon_loss", recon), ("sync_loss", sync), ("lpips_loss", lp),
                                                    ("trepa_loss", tr), ("loss", loss))})
    return StepLosses(loss, parts)


def backward(losses: StepLosses, precision: StepPrecision, accumulation: int = 1) -> None:
    """Backward of the loss (divided by the accumulation count), scaled when a grad scaler is on."""
    loss = losses.loss / accumulation if accumulation != 1 else losses.loss
    (precision.scaler.scale(loss) if precision.scaler is not None else loss).backward()


def update(params: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer, max_grad_norm: float,
           precision: StepPrecision) -> float:
    """Unscale, clip the total norm, step (skipped by the scaler on inf), zero grads; returns the norm."""
    if precision.scaler is not None:
        precision.scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(list(params), max_grad_norm)
    if precision.scaler is not None:
        precision.scaler.step(optimizer)
        precision.scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
