"""U-Net training step time and peak memory per stage and memory preset, on full-size random weights.

Each case builds the stage's U-Net (upstream's trainable set), the frozen VAE (sd-vae-ft-mse layout), StableSyncNet
(syncnet_16_pixel_attn) and LPIPS-VGG with random weights, then runs ``--steps`` training steps of
``latentsync.train.unet_step`` on a random batch (after one warm-up step) and reports the median step time and the
peak CUDA memory allocated / reserved. stage2 includes TREPA with a random VideoMAE-v2 ViT-g (upstream: float16,
block checkpointing).

Presets: ``upstream`` = fp16 autocast + grad scaler, frozen nets fp16, U-Net block and VAE decoder checkpointing, AdamW
(upstream's stage2 settings); ``no_ckpt`` = the same without any checkpointing; ``bf16`` = bf16 autocast, frozen bf16, checkpointing;
``lean`` = ``upstream`` with fused AdamW (8-bit AdamW when bitsandbytes is installed).

GPU (repository root):  python bench/train_unet_memory.py --json $OUT/train_unet_memory.json
CPU smoke run:          python bench/train_unet_memory.py --tiny --steps 1
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latentsync.configs import unet_config  # noqa: E402
from latentsync.metrics.stable_syncnet import CONFIGS, RELEASED, StableSyncNet  # noqa: E402
from latentsync.models.unet import UNet3DConditionModel  # noqa: E402
from latentsync.tiny_models import tiny_unet_config, tiny_vae_config  # noqa: E402
from latentsync.train.lpips_loss import LPIPSVGG  # noqa: E402
from latentsync.train.unet_losses import alphas_cumprod  # noqa: E402
from latentsync.train.unet_memory import enable_gradient_checkpointing, new_optimizer  # noqa: E402
from latentsync.train.videomae import VideoMAEConfig, VideoMAEEncoder, tiny_videomae_config  # noqa: E402
from latentsync.train.unet_step import (LossNets, StepPrecision, StepSettings, backward, compute_losses,  # noqa: E402
                                        select_trainable, update)

STAGES = {  # upstream's configs/unet/stage*.yaml: trainable set and losses
    "stage1": {"motion": False, "decoder_only": False, "trainable": [], "pixel": False, "trepa": 0.0},
    "stage2": {"motion": True, "decoder_only": False, "trainable": ["motion_modules.", "attentions."], "pixel": True,
               "trepa": 10.0},
    "stage2_efficient": {"motion": True, "decoder_only": True, "trainable": ["motion_modules.", "attn2."],
                         "pixel": True, "trepa": 0.0},
}
PRESETS = {
    "upstream": {"autocast": "fp16", "frozen": "fp16", "ckpt": True, "optimizer": "adamw"},
    "no_ckpt": {"autocast": "fp16", "frozen": "fp16", "ckpt": False, "optimizer": "adamw"},
    "bf16": {"autocast": "bf16", "frozen": "bf16", "ckpt": True, "optimizer": "adamw"},
    "lean": {"autocast": "fp16", "frozen": "fp16", "ckpt": True, "optimizer": "lean"},
}
TINY_SYNCNET = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32, 32], "downsample_factors": [[4, 2], 4, [2, 3]],
                      "attn_blocks": [0, 1, 0], "dropout": 0.0},
    "visual_encoder": {"in_channels": 48, "block_out_channels": [32, 32, 32], "downsample_factors": [[2, 4], 4, 1],
                       "attn_blocks": [0, 1, 0], "dropout": 0.0},
}


def build(stage: str, preset: dict, tiny: bool, device: torch.device):
    """(unet, trainable params, loss nets, settings, precision) of one case, random weights initialised on
    ``device`` (CPU initialisation of the full-size nets would dominate the run)."""
    with torch.device(device):
        return _build(stage, preset, tiny, device)


def _build(stage: str, preset: dict, tiny: bool, device: torch.device):
    """:func:`build` inside the device context."""
    from diffusers import AutoencoderKL

    spec = STAGES[stage]
    config = tiny_unet_config() if tiny else unet_config("stage2")
    config.update(use_motion_module=spec["motion"], motion_module_decoder_only=spec["decoder_only"])
    if tiny:
        config.update(cross_attention_dim=32)
    unet = UNet3DConditionModel(config)
    select_trainable(unet, spec["motion"], spec["trainable"])
    if preset["ckpt"]:
        enable_gradient_checkpointing(unet)
    unet.to(device).train()
    cuda = device.type == "cuda"
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}
    frozen = half[preset["frozen"]] if cuda else torch.float32
    vae_config = tiny_vae_config()  # sd-vae-ft-mse's layout at 32 channels, or at full size:
    if not tiny:
        vae_config.update(block_out_channels=[128, 256, 512, 512], layers_per_block=2)
    vae = AutoencoderKL(**vae_config).to(device, frozen)
    vae.requires_grad_(False)
    if preset["ckpt"] and spec["pixel"]:
        vae.enable_gradient_checkpointing()  # upstream does this whenever pixel losses are on
    sync_cfg = copy.deepcopy(TINY_SYNCNET if tiny else CONFIGS[RELEASED])
    sync_cfg.pop("data", None)
    syncnet = StableSyncNet(sync_cfg).to(device, frozen)
    syncnet.requires_grad_(False)
    trepa = None
    if spec["trepa"]:
        vit = VideoMAEEncoder(tiny_videomae_config() if tiny else VideoMAEConfig(), preset["ckpt"])
        vit.requires_grad_(False)
        trepa = vit.to(frozen).forward_features
    nets = LossNets(vae, syncnet, LPIPSVGG().to(device), trepa)
    frames, res = (16, 64) if tiny else (16, 256)
    settings = StepSettings(num_frames=frames, resolution=res, pixel_space_supervise=spec["pixel"],
                            use_syncnet=spec["pixel"], trepa_loss_weight=spec["trepa"],
                            syncnet_resolution=32 if tiny else 256)
    autocast = half[preset["autocast"]] if cuda else None
    scaler = torch.amp.GradScaler("cuda") if cuda and preset["autocast"] == "fp16" else None
    precision = StepPrecision(device, autocast, frozen, scaler)
    params = [p for p in unet.parameters() if p.requires_grad]
    kind = preset["optimizer"]
    if kind == "lean":
        try:
            import bitsandbytes  # noqa: F401
            kind = "adamw_8bit"
        except ImportError:
            kind = "adamw_fused" if cuda else "adamw"
    optimizer = new_optimizer(params, kind, 1e-5, device)
    return unet, params, nets, settings, precision, optimizer, kind, config


def random_batch(settings: StepSettings, batch: int, audio_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A random batch of upstream's shapes (pixels in [-1, 1], fixed mouth mask, audio and mel windows)."""
    f, r = settings.num_frames, settings.resolution
    gt = torch.rand(batch, f, 3, r, r, device=device) * 2 - 1
    mask = torch.ones(batch, f, 1, r, r, device=device)
    mask[..., r // 2:, r // 8: r - r // 8] = 0
    return {"gt_pixel_values": gt, "masked_pixel_values": gt * mask, "masks": mask,
            "ref_pixel_values": torch.rand_like(gt) * 2 - 1,
            "audio_embeds": torch.randn(batch, f, 50, audio_dim, device=device),
            "mel": torch.randn(batch, 1, 80, 52, device=device)}


def run_case(stage: str, preset_name: str, args: argparse.Namespace, device: torch.device) -> dict:
    """One stage x preset: median step seconds and peak memory."""
    cuda = device.type == "cuda"
    gc.collect()  # the previous case's nets and optimizer states must be gone before this case's peak counts
    start_allocated = 0
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        start_allocated = torch.cuda.memory_allocated(device)
    torch.manual_seed(0)
    unet, params, nets, settings, precision, optimizer, kind, config = build(stage, PRESETS[preset_name], args.tiny, device)
    batch = random_batch(settings, args.batch, int(config["cross_attention_dim"]), device)
    abar = alphas_cumprod()
    times = []
    for i in range(args.steps + 1):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        losses = compute_losses(unet, nets, batch, settings, abar, precision)
        backward(losses, precision)
        update(params, optimizer, 1.0, precision)
        if cuda:
            torch.cuda.synchronize(device)
        if i:  # the first step warms up kernels and allocates optimizer states
            times.append(time.perf_counter() - start)
    row = {"stage": stage, "preset": preset_name, "optimizer": kind, "batch": args.batch,
           "frames": settings.num_frames, "resolution": settings.resolution,
           "trainable_M": round(sum(p.numel() for p in params) / 1e6, 2), "step_s": round(statistics.median(times), 4),
           "loss": round(losses.parts["loss"], 5)}
    if cuda:
        row["peak_allocated_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        row["peak_reserved_GiB"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
        row["allocated_before_GiB"] = round(start_allocated / 2**30, 2)  # left by earlier cases (should be ~0)
    del unet, params, nets, optimizer, batch
    return row


def main() -> None:
    """Run every stage x preset and print / write the rows."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--steps", type=int, default=3, help="measured steps per case (after one warm-up step)")
    p.add_argument("--batch", type=int, default=1, help="videos per step (upstream's stage2: 1)")
    p.add_argument("--tiny", action="store_true", help="tiny nets at 64 px, 16 frames (a CPU smoke run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":  # the test venvs' CUDA torchvision on a CPU torch (tests/cpu_torchvision.py)
        sys.path.insert(0, str(REPO / "tests"))
        try:
            from cpu_torchvision import stub_registrations_if_needed

            stub_registrations_if_needed()
        except ImportError:
            pass
    rows = []
    for stage in args.stages:
        for preset in args.presets:
            try:
                row = run_case(stage, preset, args, device)
            except torch.cuda.OutOfMemoryError:
                row = {"stage": stage, "preset": preset, "error": "out of memory"}
                torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(device) if device.type == "cuda"
                                               else "cpu", "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
