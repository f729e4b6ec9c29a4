"""U-Net training step against upstream's code (stage1, stage2, stage2_efficient) on hashed random weights.

Reads $LATENTSYNC_TRAIN_UNET_FIXTURES (default tests/fixtures/train_unet), written by
tools/fixtures_gen/gen_train_unet_fixtures.py: the batch, upstream's draws (noise, timesteps), its noise
prediction, losses (latent MSE, SyncNet, LPIPS, TREPA with a stand-in feature net), per-tensor gradient sums /
norms / projections, a few full gradients and the total norm before clipping. Bounds are the manifest's ``check``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from latentsync.metrics import tiny
from latentsync.metrics.stable_syncnet import StableSyncNet
from latentsync.models.unet import UNet3DConditionModel
from latentsync.train import unet_fixture_nets as nets
from latentsync.train.lpips_loss import lpips_from_state
from latentsync.train.unet_losses import alphas_cumprod
from latentsync.train.unet_step import LossNets, StepPrecision, StepSettings, backward, compute_losses, select_trainable

REPO = Path(__file__).resolve().parents[2]
STAGES = ("stage1", "stage2", "stage2_efficient")


def fixture_dir() -> Path:
    """$LATENTSYNC_TRAIN_UNET_FIXTURES or the in-repo default."""
    return Path(os.environ.get("LATENTSYNC_TRAIN_UNET_FIXTURES", REPO / "tests" / "fixtures" / "train_unet")).resolve()


@pytest.fixture(scope="module")
def fx() -> dict:
    """The manifest and tensors."""
    from safetensors.torch import load_file

    path = fixture_dir()
    if not (path / "manifest.json").is_file():
        pytest.fail(f"train_unet fixtures not found at {path}; set LATENTSYNC_TRAIN_UNET_FIXTURES to a folder made by "
                    f"tools/fixtures_gen/gen_train_unet_fixtures.py")
    return {"m": json.loads((path / "manifest.json").read_text()), "t": load_file(str(path / "outputs.safetensors"))}


def fixture_batch(m: dict, t: dict) -> dict[str, torch.Tensor]:
    """The step's batch from the stored uint8 faces, mask and audio."""
    size = m["sizes"]
    b, f, r = size["batch"], size["frames"], size["resolution"]
    gt = t["batch.gt_uint8"].float() / 127.5 - 1.0
    mask = t["batch.mask_uint8"].float()[None, None, None].expand(b, f, 1, r, r)
    return {"gt_pixel_values": gt, "masked_pixel_values": gt * mask, "masks": mask,
            "ref_pixel_values": t["batch.ref_uint8"].float() / 127.5 - 1.0,
            "audio_embeds": t["batch.audio_embeds"], "mel": t["batch.mel"]}


def run_stage(fx: dict, stage: str) -> tuple[dict, dict, dict, list[str]]:
    """Our step on the fixture's weights and batch at one thread; (record, parts, grads, trainable names)."""
    from diffusers import AutoencoderKL

    m, t = fx["m"], fx["t"]
    seed, st = m["seeds"]["weights"], m["stages"][stage]
    run, config = st["run"], st["unet_config"]
    unet = UNet3DConditionModel(config)
    unet.load_state_dict(nets.unet_state(config, seed), strict=True)
    vae = AutoencoderKL(**m["vae_config"])
    vae.load_state_dict(nets.vae_state(vae.state_dict(), seed), strict=True)
    vae.requires_grad_(False)
    syncnet = StableSyncNet(m["syncnet_config"])
    syncnet.load_state_dict(tiny.stable_syncnet_state(m["syncnet_config"], seed), strict=True)
    syncnet.requires_grad_(False)
    feats = nets.TinyVideoFeatures(m["sizes"]["trepa_dim"])
    feats.load_state_dict(nets.trepa_features_state(m["sizes"]["trepa_dim"], seed))
    feats.requires_grad_(False)
    names = select_trainable(unet, run["use_motion_module"], run["trainable_modules"])
    unet.train()
    settings = StepSettings(
        num_frames=m["sizes"]["frames"], resolution=m["sizes"]["resolution"],
        syncnet_resolution=m["sizes"]["syncnet_resolution"],
        **{k: run[k] for k in ("pixel_space_supervise", "use_syncnet", "recon_loss_weight", "sync_loss_weight",
                               "perceptual_loss_weight", "trepa_loss_weight", "use_mixed_noise", "mixed_noise_alpha")})
    loss_nets = LossNets(vae, syncnet, lpips_from_state(nets.lpips_state(seed)), feats.forward_features)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(m["seeds"]["step"])
        record: dict = {}
        losses = compute_losses(unet, loss_nets, fixture_batch(m, t), settings, alphas_cumprod(),
                                StepPrecision(torch.device("cpu")), record)
        backward(losses, StepPrecision(torch.device("cpu")))
    finally:
        torch.set_num_threads(before)
    grads = {n: p.grad.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}
    return record, losses.parts, grads, names


@pytest.fixture(scope="module")
def results(fx) -> dict:
    """Every stage's result, computed once."""
    return {s: run_stage(fx, s) for s in STAGES}


@pytest.mark.parametrize("stage", STAGES)
def test_trainable_set_and_draws(fx, results, stage):
    record, _, _, names = results[stage]
    t = fx["t"]
    assert sorted(names) == sorted(fx["m"]["stages"][stage]["trainable"])  # upstream registers modules in another order
    assert torch.equal(record["timesteps"], t[f"{stage}.timesteps"])
    torch.testing.assert_close(record["noise"], t[f"{stage}.noise"], rtol=0, atol=0)
    torch.testing.assert_close(record["pred_noise"], t[f"{stage}.pred_noise"], rtol=0,
                               atol=fx["m"]["check"]["pred_noise"]["atol"])


@pytest.mark.parametrize("stage", STAGES)
def test_losses(fx, results, stage):
    _, parts, _, _ = results[stage]
    bound = fx["m"]["check"]["losses"]
    for key in ("loss", "recon_loss", "sync_loss", "lpips_loss", "trepa_loss"):
        want = float(fx["t"][f"{stage}.{key}"])
        assert parts[key] == pytest.approx(want, rel=bound["rtol"], abs=bound["atol"]), key


@pytest.mark.parametrize("stage", STAGES)
def test_gradients(fx, results, stage):
    _, _, ours, _ = results[stage]
    t, check = fx["t"], fx["m"]["check"]
    grads = {n: ours[n] for n in fx["m"]["stages"][stage]["trainable"]}  # the summaries are in upstream's order
    summary = nets.grad_summary(grads, fx["m"]["seeds"]["weights"])
    scale = float(t[f"{stage}.grad_norms"].max())
    bound = check["grad_sums_norms_projections"]
    for key in ("sums", "norms", "projections"):
        torch.testing.assert_close(summary[key], t[f"{stage}.grad_{key}"], rtol=bound["rtol"],
                                   atol=bound["atol_relative_to_max_norm"] * scale, msg=key)
    total = torch.stack([g.double().norm() for g in grads.values()]).norm()
    assert float(total) == pytest.approx(float(t[f"{stage}.grad_norm"]), rel=check["grad_norm"]["rtol"])
    full = [k for k in t if k.startswith(f"{stage}.fullgrad.")]
    assert full
    for key in full:
        want = t[key]
        got = grads[key[len(f"{stage}.fullgrad."):]]
        torch.testing.assert_close(got, want, rtol=0, atol=check["full_grads"]["atol_relative_to_max"]
                                   * float(want.abs().max()), msg=key)


def test_trepa_with_the_videomae_encoder(fx):
    """TREPA through this pack's VideoMAE-v2 encoder (tiny width, ViT-g's 16 x 224 px token layout) equals upstream's
    TREPALoss on upstream's VisionTransformer: loss and the gradient wrt the generated video."""
    from latentsync.metrics.tiny import init_state
    from latentsync.train.unet_losses import trepa_loss
    from latentsync.train.videomae import VideoMAEEncoder, tiny_videomae_config

    m, t = fx["m"], fx["t"]
    vit = VideoMAEEncoder(tiny_videomae_config())
    shapes = {k: tuple(v.shape) for k, v in vit.state_dict().items()}
    vit.load_state_dict(init_state(shapes, m["seeds"]["weights"], gain=1.0), strict=True)
    vit.requires_grad_(False)
    fake5 = t["batch.trepa_fake_uint8"].float() / 127.5 - 1.0
    real5 = t["batch.trepa_real_uint8"].float() / 127.5 - 1.0
    frames = fake5.shape[2]
    fake = fake5.permute(0, 2, 1, 3, 4).reshape(-1, 3, *fake5.shape[3:]).requires_grad_(True)  # (B*F, 3, H, W)
    real = real5.permute(0, 2, 1, 3, 4).reshape(-1, 3, *real5.shape[3:])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loss = trepa_loss(vit.forward_features, fake, real, frames)
        loss.backward()
    finally:
        torch.set_num_threads(before)
    bound = m["check"]["trepa_vit"]
    assert float(loss.detach()) == pytest.approx(float(t["trepa_vit.loss"]), rel=bound["loss_rtol"])
    want = t["trepa_vit.fake_grad"]
    got = fake.grad.reshape(want.shape[0], frames, 3, *want.shape[3:]).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(got, want, rtol=0, atol=bound["grad_atol_relative_to_max"] * float(want.abs().max()))
