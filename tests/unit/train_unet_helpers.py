"""Tiny U-Net training setups for the tests: a config, in-memory clips, hashed tiny loss nets."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import yaml

from latentsync.metrics import tiny
from latentsync.metrics.stable_syncnet import StableSyncNet
from latentsync.tiny_models import tiny_unet_config, tiny_vae_config
from latentsync.train import unet_fixture_nets as nets
from latentsync.data.unet_samples import UNetClip, UNetSamples
from latentsync.train.unet_step import LossNets

FRAMES, RES, DIM, SEED = 4, 64, 32, 11
SYNCNET = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32, 32], "downsample_factors": [[4, 1], [5, 2], [2, 3]],
                      "attn_blocks": [0, 0, 0], "dropout": 0.0},
    "visual_encoder": {"in_channels": 3 * FRAMES, "block_out_channels": [32, 32, 32],
                       "downsample_factors": [[2, 4], 4, 1], "attn_blocks": [0, 0, 0], "dropout": 0.0},
}
VAE = tiny_vae_config(sample_size=RES)


def unet_model_config(motion: bool) -> dict:
    """The tiny U-Net (one layer per block, 32-wide audio)."""
    return tiny_unet_config(layers_per_block=1, cross_attention_dim=DIM, use_motion_module=motion, sample_size=RES // 8)


def raw_config(stage: str = "stage1", **run) -> dict:
    """An upstream-format config dict for the tiny setup (stage1: latent MSE; stage2: + SyncNet loss)."""
    motion = stage != "stage1"
    raw = {
        "data": {"train_output_dir": "", "train_fileslist": "", "train_data_dir": "unused", "batch_size": 2,
                 "num_workers": 0, "num_frames": FRAMES, "resolution": RES, "video_fps": 25, "audio_feat_length": [2, 2],
                 "syncnet_config_path": "", "mask_image_path": ""},
        "ckpt": {"resume_ckpt_path": "", "save_ckpt_steps": 2},
        "run": {"pixel_space_supervise": motion, "use_syncnet": motion, "sync_loss_weight": 0.05,
                "perceptual_loss_weight": 0.0, "recon_loss_weight": 1, "trepa_loss_weight": 0.0,
                "trainable_modules": ["motion_modules.", "attentions."] if motion else [], "seed": 1247,
                "use_mixed_noise": True, "mixed_noise_alpha": 1, "mixed_precision_training": True,
                "enable_gradient_checkpointing": motion, "max_train_steps": 4},
        "optimizer": {"lr": 1e-4, "scale_lr": False, "max_grad_norm": 1.0, "lr_scheduler": "constant",
                      "lr_warmup_steps": 0},
        "model": unet_model_config(motion),
    }
    raw["run"].update(run)
    return raw


def write_config(path: Path, raw: dict) -> Path:
    """The config as yaml."""
    path.write_text(yaml.safe_dump(raw))
    return path


def clips(count: int = 3, length: int = 14) -> dict[str, UNetClip]:
    """Smooth random face clips with random mels and whisper windows (fixed seed)."""
    rng = np.random.default_rng(3)
    out = {}
    for i in range(count):
        coarse = torch.from_numpy(rng.integers(0, 256, size=(length, 3, 4, 4)).astype(np.float32))
        frames = torch.nn.functional.interpolate(coarse, size=RES, mode="bilinear").round().clamp(0, 255)
        mel = torch.from_numpy(rng.standard_normal((80, length * 80 // 25 + 20)))
        audio = torch.from_numpy(rng.standard_normal((length, 10, DIM)).astype(np.float32))
        out[f"clip{i}"] = UNetClip(frames.to(torch.uint8).permute(0, 2, 3, 1).contiguous(), mel, audio)
    return out


def data_factory(cfg, procs) -> UNetSamples:
    """The in-memory clips as the run's samples."""
    table = clips()
    mask = torch.ones(RES, RES)
    mask[RES // 2:, RES // 8: RES - RES // 8] = 0
    return UNetSamples(sorted(table), table.__getitem__, num_frames=cfg.num_frames, resolution=cfg.resolution,
                       fps=cfg.video_fps, seed=cfg.seed, mask=mask, need_mel=bool(cfg.run["use_syncnet"]))


def nets_factory(cfg, device, dtype) -> LossNets:
    """Hashed tiny VAE and StableSyncNet."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**VAE)
    vae.load_state_dict(nets.vae_state(vae.state_dict(), SEED))
    vae.requires_grad_(False)
    sync = StableSyncNet(copy.deepcopy(SYNCNET))
    sync.load_state_dict(tiny.stable_syncnet_state(SYNCNET, SEED))
    sync.requires_grad_(False)
    return LossNets(vae.to(device), sync.to(device), syncnet_geometry=(32, True))


def init_state(cfg) -> dict[str, torch.Tensor]:
    """Hashed initial U-Net weights (motion modules not zero, so every trainable tensor gets a gradient)."""
    return nets.unet_state(cfg.model, SEED)


def _precision():
    from latentsync.train.unet_step import StepPrecision

    return StepPrecision(torch.device("cpu"))


PRECISION = _precision()


def ddp_case(batch_size: int = 4):
    """A stage2 U-Net, its loss nets and settings, a batch of ``batch_size`` samples and fixed draws."""
    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.train.unet_config import parse_config
    from latentsync.train.unet_loop import step_settings
    from latentsync.train.unet_step import Draws, select_trainable

    cfg = parse_config(raw_config("stage2"))
    unet = UNet3DConditionModel(cfg.model)
    unet.load_state_dict(init_state(cfg))
    select_trainable(unet, True, cfg.run["trainable_modules"])
    loss_nets = nets_factory(cfg, torch.device("cpu"), torch.float32)
    settings = step_settings(cfg, 32, True)
    data = data_factory(cfg, None)
    items = [data[k] for k in range(batch_size)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    gen = torch.Generator().manual_seed(99)
    lat = (batch_size * FRAMES, 4, RES // 8, RES // 8)
    noise = torch.randn((batch_size, 4, FRAMES, RES // 8, RES // 8), generator=gen)
    draws = Draws(torch.randn(lat, generator=gen), torch.randn(lat, generator=gen), torch.randn(lat, generator=gen),
                  noise, torch.randint(0, 1000, (batch_size,), generator=gen))
    return unet, loss_nets, settings, batch, draws


def slice_batch(batch: dict, part: slice) -> dict:
    """Samples ``part`` of a batch."""
    return {k: v[part] for k, v in batch.items()}


def slice_draws(draws, part: slice, frames: int):
    """The draws of samples ``part`` (posterior draws are per frame: F rows per sample)."""
    from latentsync.train.unet_step import Draws

    rows = slice(part.start * frames, part.stop * frames)
    return Draws(draws.gt_eps[rows], draws.masked_eps[rows], draws.ref_eps[rows], draws.noise[part],
                 draws.timesteps[part])


def case_losses(unet, loss_nets, settings, batch, draws):
    """The step's losses for given draws."""
    from latentsync.train.unet_losses import alphas_cumprod
    from latentsync.train.unet_step import compute_losses

    return compute_losses(unet, loss_nets, batch, settings, alphas_cumprod(), PRECISION, draws=draws)
