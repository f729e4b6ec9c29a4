"""Write tests/fixtures/train_unet/: one U-Net training step per stage, computed by upstream LatentSync's code.

Imports upstream's own modules from an extracted checkout (``--upstream`` or $LS_UPSTREAM, commit a229c39):
``latentsync.models.unet.UNet3DConditionModel``, ``latentsync.models.stable_syncnet.StableSyncNet``,
``latentsync.utils.util.one_step_sampling`` / ``cosine_loss``, ``latentsync.trepa.loss.TREPALoss.__call__``,
diffusers' ``DDIMScheduler`` read from upstream's ``configs/scheduler_config.json``, diffusers' ``AutoencoderKL``
and the ``lpips`` package's ``LPIPS(net="vgg")``. The step's glue (the order of the draws, the losses and their
weights) follows ``scripts/train_unet.py`` of that commit, written out here as a sequence of those calls (the
script itself needs CUDA, whisper, the dataset and validation, none of which enter the step's numbers). Nothing of
upstream is copied; only outputs are committed.

Stand-ins, all stated in the manifest: float32 on the CPU (upstream casts inputs and frozen nets to float16 and
uses autocast + GradScaler on CUDA); random weights from ``latentsync.metrics.tiny.init_state`` (a counter-based
hash, the same on every machine) so that no weights are stored; LPIPS' VGG16 trunk with hashed weights
(``pnet_rand=True``, then loaded); TREPA's VideoMAE-v2 (ViT-g, 1 B parameters) replaced by a tiny patch-embedding
feature net given to upstream's ``TREPALoss.__call__`` (the loss's resize / range / normalise / MSE are upstream's).
Gradients are recorded as per-tensor sums, norms and projections on a hashed direction, plus a few full tensors.
"""

from __future__ import annotations

import copy
import json
import os
import platform
from pathlib import Path

import numpy as np

from upstream_env import load_ours, parse_args, use_upstream  # this folder: run as a script

REPO = Path(__file__).resolve().parents[2]
WEIGHT_SEED, DATA_SEED, STEP_SEED = 1247, 7, 20240
BATCH, FRAMES, RESOLUTION, AUDIO_TOKENS, AUDIO_DIM = 2, 8, 64, 10, 32
SYNCNET_RESOLUTION = 32
SYNCNET_CONFIG = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32, 32], "downsample_factors": [[4, 2], 4, [2, 3]],
                      "attn_blocks": [0, 1, 0], "dropout": 0.0},
    "visual_encoder": {"in_channels": 3 * FRAMES, "block_out_channels": [32, 32, 32],
                       "downsample_factors": [[2, 4], 4, 1], "attn_blocks": [0, 1, 0], "dropout": 0.0},
}
# upstream's configs/unet/stage*.yaml "run" sections (the keys the step reads), at tiny sizes
STAGES = {
    "stage1": {"use_motion_module": False, "motion_module_decoder_only": False, "trainable_modules": [],
               "pixel_space_supervise": False, "use_syncnet": False, "recon_loss_weight": 1.0,
               "sync_loss_weight": 0.05, "perceptual_loss_weight": 0.1, "trepa_loss_weight": 10.0,
               "use_mixed_noise": True, "mixed_noise_alpha": 1.0, "max_grad_norm": 1.0},
    "stage2": {"use_motion_module": True, "motion_module_decoder_only": False,
               "trainable_modules": ["motion_modules.", "attentions."],
               "pixel_space_supervise": True, "use_syncnet": True, "recon_loss_weight": 1.0,
               "sync_loss_weight": 0.05, "perceptual_loss_weight": 0.1, "trepa_loss_weight": 10.0,
               "use_mixed_noise": True, "mixed_noise_alpha": 1.0, "max_grad_norm": 1.0},
    "stage2_efficient": {"use_motion_module": True, "motion_module_decoder_only": True,
                         "trainable_modules": ["motion_modules.", "attn2."],
                         "pixel_space_supervise": True, "use_syncnet": True, "recon_loss_weight": 1.0,
                         "sync_loss_weight": 0.05, "perceptual_loss_weight": 0.1, "trepa_loss_weight": 0.0,
                         "use_mixed_noise": True, "mixed_noise_alpha": 1.0, "max_grad_norm": 1.0},
}
FULL_GRADS = 6  # full gradient tensors recorded per stage (the smallest trainable ones, spread over the net)
TREPA_DIM = 16
CHECK = {
    "_about": "bounds for a float32 CPU re-implementation, read by tests/parity/test_train_unet_parity.py",
    "draws": {"atol": 0.0}, "losses": {"rtol": 1e-5, "atol": 1e-7}, "pred_noise": {"atol": 1e-5},
    "grad_sums_norms_projections": {"rtol": 0.0, "atol_relative_to_max_norm": 3e-3},
    "full_grads": {"atol_relative_to_max": 3e-3}, "grad_norm": {"rtol": 1e-3},
    "trepa_vit": {"loss_rtol": 1e-4, "grad_atol_relative_to_max": 1e-3},
    "note": "the backward passes of two float32 implementations of these random nets differ by about as much as "
            "one implementation at 1 vs 2 threads (stage1 gradient sums: 3.1e-4 vs 4.3e-4 of the largest norm)",
}
OBSERVED = {
    "_about": "tests/parity/test_train_unet_parity.py vs this fixture, torch 2.13 CPU float32, 1 thread",
    "draws (posterior samples, noise, timesteps), noise prediction, all five losses": "bit-identical, 3 stages",
    "gradient sums / norms / projections, of the largest per-tensor norm": "stage1 4.3e-4 / 4.2e-5 / 4.9e-6, "
        "stage2 1.2e-3 / 3.9e-4 / 5.5e-5, stage2_efficient 4.8e-4 / 9.1e-5 / 2.1e-5",
    "full gradient tensors, of their max": "stage1 5.3e-4, stage2 1.6e-3, stage2_efficient 3.3e-4",
    "total norm before clipping, relative": "stage1 3.1e-5, stage2 3.5e-4, stage2_efficient 6.8e-5",
}


def unet_config(ours, stage: dict) -> dict:
    """The tiny U-Net config of a stage (ours.tiny_unet_config with a 32-wide audio context)."""
    config = ours.tiny_models.tiny_unet_config()
    config.update(cross_attention_dim=AUDIO_DIM, use_motion_module=stage["use_motion_module"],
                  motion_module_decoder_only=stage["motion_module_decoder_only"], sample_size=RESOLUTION // 8)
    return config


def make_batch():
    """The fixed batch: uint8 faces and references, the fixed mask, audio windows, mel windows."""
    import torch

    rng = np.random.default_rng(DATA_SEED)
    coarse = rng.integers(0, 256, size=(2, BATCH, FRAMES, 3, 8, 8)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse.reshape(-1, 3, 8, 8)), size=RESOLUTION,
                                             mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.integers(-12, 13, size=tuple(smooth.shape)).astype(np.float32))
    faces = (smooth + noise).round().clamp(0, 255).to(torch.uint8).reshape(2, BATCH, FRAMES, 3, RESOLUTION, RESOLUTION)
    mask = torch.ones(RESOLUTION, RESOLUTION, dtype=torch.uint8)
    mask[RESOLUTION // 2:, RESOLUTION // 8: RESOLUTION - RESOLUTION // 8] = 0
    audio = torch.from_numpy(rng.standard_normal((BATCH, FRAMES, AUDIO_TOKENS, AUDIO_DIM)).astype(np.float32))
    mel = torch.from_numpy(rng.standard_normal((BATCH, 1, 80, 52)).astype(np.float32))
    trepa_videos = torch.from_numpy(rng.integers(0, 256, size=(2, 1, 3, 16, 32, 32)).astype(np.uint8))
    return {"gt_uint8": faces[0].contiguous(), "ref_uint8": faces[1].contiguous(), "mask_uint8": mask,
            "audio_embeds": audio, "mel": mel, "trepa_fake_uint8": trepa_videos[0].contiguous(),
            "trepa_real_uint8": trepa_videos[1].contiguous()}


def run_stage(name: str, stage: dict, ours, upstream: str, batch: dict) -> dict:
    """Upstream's step for one stage; returns the recorded tensors."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDIMScheduler
    from einops import rearrange

    from latentsync.models.stable_syncnet import StableSyncNet
    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.trepa.loss import TREPALoss
    from latentsync.utils.util import cosine_loss, one_step_sampling
    import lpips

    tiny, nets = ours.metrics.tiny, ours.train.unet_fixture_nets
    config = unet_config(ours, stage)
    unet = UNet3DConditionModel.from_config(config)
    unet.load_state_dict(nets.unet_state(config, WEIGHT_SEED), strict=True)
    vae = AutoencoderKL(**ours.tiny_models.tiny_vae_config(RESOLUTION))
    vae.load_state_dict(nets.vae_state(vae.state_dict(), WEIGHT_SEED), strict=True)
    vae.requires_grad_(False)
    scheduler = DDIMScheduler.from_pretrained(os.path.join(upstream, "configs"))
    syncnet = StableSyncNet(copy.deepcopy(SYNCNET_CONFIG))
    syncnet.load_state_dict(tiny.stable_syncnet_state(SYNCNET_CONFIG, WEIGHT_SEED), strict=True)
    syncnet.requires_grad_(False)
    lpips_fn = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    lpips_state = nets.lpips_state(WEIGHT_SEED)
    package_state = lpips_fn.state_dict()  # + its scaling_layer constants
    package_state.update({nets.LPIPS_KEYS_TO_PACKAGE(k): v for k, v in lpips_state.items()})
    lpips_fn.load_state_dict(package_state, strict=True)
    trepa = TREPALoss.__new__(TREPALoss)  # upstream's __call__, its VideoMAE-v2 replaced by a tiny feature net
    trepa.model = nets.TinyVideoFeatures(TREPA_DIM)
    trepa.model.load_state_dict(nets.trepa_features_state(TREPA_DIM, WEIGHT_SEED))
    trepa.model.requires_grad_(False)

    if stage["use_motion_module"]:  # upstream's trainable-parameter rule
        unet.requires_grad_(False)
        for pname, param in unet.named_parameters():
            if any(m in pname for m in stage["trainable_modules"]):
                param.requires_grad = True
        trainable = [p for p in unet.parameters() if p.requires_grad]
    else:
        unet.requires_grad_(True)
        trainable = list(unet.parameters())
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    unet.train()

    gt = batch["gt_uint8"].float() / 127.5 - 1.0
    ref = batch["ref_uint8"].float() / 127.5 - 1.0
    mask = batch["mask_uint8"].float()[None, None, None].expand(BATCH, FRAMES, 1, RESOLUTION, RESOLUTION)
    masked = gt * mask
    f = FRAMES
    gt_pixel_values = rearrange(gt, "b f c h w -> (b f) c h w")
    masked_pixel_values = rearrange(masked, "b f c h w -> (b f) c h w")
    masks = rearrange(mask, "b f c h w -> (b f) c h w")
    ref_pixel_values = rearrange(ref, "b f c h w -> (b f) c h w")

    torch.manual_seed(STEP_SEED)
    with torch.no_grad():
        gt_latents = vae.encode(gt_pixel_values).latent_dist.sample()
        masked_latents = vae.encode(masked_pixel_values).latent_dist.sample()
        ref_latents = vae.encode(ref_pixel_values).latent_dist.sample()
    masks = F.interpolate(masks, size=RESOLUTION // 8)
    sf = 0.18215
    gt_latents = rearrange(gt_latents, "(b f) c h w -> b c f h w", f=f) * sf
    masked_latents = rearrange(masked_latents, "(b f) c h w -> b c f h w", f=f) * sf
    ref_latents = rearrange(ref_latents, "(b f) c h w -> b c f h w", f=f) * sf
    masks = rearrange(masks, "(b f) c h w -> b c f h w", f=f)
    alpha = stage["mixed_noise_alpha"]
    if stage["use_mixed_noise"]:
        shared = torch.randn_like(gt_latents) * (alpha**2 / (1 + alpha**2)) ** 0.5
        shared = shared[:, :, 0:1].repeat(1, 1, f, 1, 1)
        noise = torch.randn_like(gt_latents) * (1 / (1 + alpha**2)) ** 0.5 + shared
    else:
        noise = torch.randn_like(gt_latents)[:, :, 0:1].repeat(1, 1, f, 1, 1)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (BATCH,)).long()
    noisy = scheduler.add_noise(gt_latents, noise, timesteps)
    unet_input = torch.cat([noisy, masks, masked_latents, ref_latents], dim=1)
    pred_noise = unet(unet_input, timesteps, encoder_hidden_states=batch["audio_embeds"]).sample
    recon = F.mse_loss(pred_noise.float(), noise.float(), reduction="mean")
    zero = torch.zeros(())
    sync = lp = tr = zero
    if stage["pixel_space_supervise"]:
        pred_latents = one_step_sampling(scheduler, pred_noise, timesteps, noisy)
        pixels = vae.decode(rearrange(pred_latents, "b c f h w -> (b f) c h w") / sf).sample
        h = pixels.shape[2] // 2
        lp = lpips_fn(pixels[:, :, h:, :].float(), gt_pixel_values[:, :, h:, :].float()).mean()
        if stage["trepa_loss_weight"] != 0:
            tr = trepa(rearrange(pixels, "(b f) c h w -> b c f h w", f=f),
                       rearrange(gt_pixel_values, "(b f) c h w -> b c f h w", f=f))
        sync_pixels = F.interpolate(pixels, size=(SYNCNET_RESOLUTION, SYNCNET_RESOLUTION), mode="bicubic")
        sync_in = rearrange(sync_pixels, "(b f) c h w -> b (f c) h w", f=f)
        sync_in = sync_in[:, :, sync_in.shape[2] // 2:, :]
        vision, audio = syncnet(sync_in, batch["mel"])
        sync = cosine_loss(vision.float(), audio.float(), torch.ones((BATCH, 1))).mean()
    loss = (recon * stage["recon_loss_weight"] + sync * stage["sync_loss_weight"]
            + lp * stage["perceptual_loss_weight"] + tr * stage["trepa_loss_weight"])
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}
    norm = torch.nn.utils.clip_grad_norm_(trainable, stage["max_grad_norm"])
    rec = {"timesteps": timesteps, "noise": noise.contiguous(), "pred_noise": pred_noise.detach().contiguous(),
           "loss": loss.detach().reshape(()), "recon_loss": recon.detach().reshape(()),
           "sync_loss": sync.detach().reshape(()), "lpips_loss": lp.detach().reshape(()),
           "trepa_loss": tr.detach().reshape(()), "grad_norm": norm.detach().reshape(())}
    summary = nets.grad_summary(grads, WEIGHT_SEED)
    rec.update({f"grad_{k}": v for k, v in summary.items()})
    for pname in nets.pick_full_grads(grads, FULL_GRADS):
        rec[f"fullgrad.{pname}"] = grads[pname]
    return {"tensors": {f"{name}.{k}": v for k, v in rec.items()}, "names": names, "config": config}


def run_trepa_vit(ours, batch: dict) -> dict:
    """Upstream's TREPALoss.__call__ with upstream's own VideoMAE-v2 VisionTransformer at a tiny width (16 frames,
    224 px, 14 px patches as ViT-g), hashed weights; records the loss and the gradient wrt the fake video."""
    from functools import partial

    import torch
    from torch import nn

    from latentsync.trepa.loss import TREPALoss
    from latentsync.trepa.third_party.VideoMAEv2.videomaev2_finetune import VisionTransformer

    tiny_cfg = ours.train.videomae.tiny_videomae_config()
    vit = VisionTransformer(img_size=224, patch_size=14, embed_dim=tiny_cfg.embed_dim, depth=tiny_cfg.depth,
                            num_heads=tiny_cfg.num_heads, mlp_ratio=48 / 11, qkv_bias=True,
                            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=174, all_frames=16,
                            tubelet_size=2, drop_path_rate=0.3, use_mean_pooling=True, with_cp=False)
    shapes = {k: tuple(v.shape) for k, v in vit.state_dict().items()}
    vit.load_state_dict(ours.metrics.tiny.init_state(shapes, WEIGHT_SEED, gain=1.0), strict=True)
    trepa = TREPALoss.__new__(TREPALoss)
    trepa.model = vit.eval()
    trepa.model.requires_grad_(False)
    fake = (batch["trepa_fake_uint8"].float() / 127.5 - 1.0).requires_grad_(True)
    real = batch["trepa_real_uint8"].float() / 127.5 - 1.0
    loss = trepa(fake, real)
    loss.backward()
    return {"trepa_vit.loss": loss.detach().reshape(()), "trepa_vit.fake_grad": fake.grad.detach().clone()}


def main() -> None:
    """Run every stage and TREPA on upstream's code and write the fixture."""
    args = parse_args(__doc__.splitlines()[0], "train_unet", "scripts/train_unet.py", media=False)
    upstream, out = os.path.abspath(args.upstream), Path(args.out).resolve()
    ours = load_ours("tiny_models", "train.unet_fixture_nets", "train.videomae")
    use_upstream(upstream)
    import diffusers
    import lpips
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    batch = make_batch()
    tensors = {f"batch.{k}": v for k, v in batch.items()}
    stages = {}
    for name, stage in STAGES.items():
        got = run_stage(name, stage, ours, upstream, batch)
        tensors.update(got["tensors"])
        stages[name] = {"run": stage, "unet_config": got["config"], "trainable": got["names"]}
        print(name, {k.split(".", 1)[1]: float(v) for k, v in got["tensors"].items() if v.dim() == 0})
    tensors.update(run_trepa_vit(ours, batch))
    print("trepa_vit", float(tensors["trepa_vit.loss"]))
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(out / "outputs.safetensors"))
    manifest = {
        "upstream_commit": "a229c3948406bc2cf6eaf4873e662e70c6a04746",
        "generator": "tools/fixtures_gen/gen_train_unet_fixtures.py",
        "env": {"torch": torch.__version__, "diffusers": diffusers.__version__, "lpips": getattr(lpips, "__version__", "0.1.4"),
                "machine": platform.machine(), "threads": 1, "dtype": "float32", "device": "cpu"},
        "seeds": {"weights": WEIGHT_SEED, "data": DATA_SEED, "step": STEP_SEED},
        "sizes": {"batch": BATCH, "frames": FRAMES, "resolution": RESOLUTION, "audio_tokens": AUDIO_TOKENS,
                  "audio_dim": AUDIO_DIM, "syncnet_resolution": SYNCNET_RESOLUTION, "trepa_dim": TREPA_DIM},
        "syncnet_config": SYNCNET_CONFIG, "vae_config": ours.tiny_models.tiny_vae_config(RESOLUTION),
        "stages": stages, "check": CHECK, "observed": OBSERVED,
        "stand_ins": ["float32 on the CPU instead of float16 + autocast + GradScaler on CUDA",
                      "hashed random weights (latentsync.metrics.tiny.init_state) for U-Net, VAE, StableSyncNet, "
                      "LPIPS' VGG16 + linear layers",
                      "TREPA in the step: upstream's TREPALoss.__call__ with latentsync.train.unet_fixture_nets."
                      "TinyVideoFeatures instead of VideoMAE-v2 ViT-g",
                      "TREPA on its own (trepa_vit.*): upstream's TREPALoss.__call__ with upstream's VideoMAE-v2 "
                      "VisionTransformer at width 32, depth 2, 2 heads (ViT-g's token layout), hashed weights"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print({p.name: p.stat().st_size for p in out.iterdir()})


if __name__ == "__main__":
    main()
