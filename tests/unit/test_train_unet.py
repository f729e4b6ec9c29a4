"""U-Net training: 2 gloo processes average to the whole batch's gradient; a stopped and resumed run equals an
uninterrupted one bit for bit; the tiny stage1 config lowers its loss; checkpoints load in the pack's loader
strictly; bad configs are refused. Tiny models, CPU, one thread (the CI machines share two cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_unet_helpers as helpers
from latentsync.train import run_files
from latentsync.train.syncnet_config import ConfigError
from latentsync.train.unet_config import parse_config
from latentsync.train.unet_loop import train_unet
from latentsync.train.unet_step import backward

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("train_unet_ddp_child.py")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads run this tiny work many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(raw: dict, out: Path, **kwargs):
    """train_unet on the tiny nets and clips."""
    cfg = parse_config(raw)
    return train_unet(cfg, out, device="cpu", nets_factory=helpers.nets_factory, data_factory=helpers.data_factory,
                      init_state=helpers.init_state(cfg), log_every=1000, **kwargs)


def test_two_gloo_processes_average_to_the_whole_batch_gradient(tmp_path):
    """torchrun, 2 CPU processes, 2 samples each with fixed draws: DDP's averaged stage2 gradient (latent MSE +
    SyncNet loss through the VAE decoder) equals one process on all 4 samples."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(CHILD.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(CHILD), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    unet, loss_nets, settings, batch, draws = helpers.ddp_case()
    backward(helpers.case_losses(unet, loss_nets, settings, batch, draws), helpers.PRECISION)
    ddp = torch.load(tmp_path / "grads_ddp.pt", weights_only=True)
    ours = {n: p.grad for n, p in unet.named_parameters() if p.requires_grad}
    assert sorted(ddp) == sorted(ours)
    scale = max(float(g.abs().max()) for g in ours.values())
    worst = max(float((ours[n] - ddp[n]).abs().max()) for n in ours)
    assert worst <= 1e-3 * scale, (worst, scale)  # float32 summation order (cf. the parity fixture's 1-vs-2 threads)
    unet.zero_grad()
    half = helpers.slice_batch(batch, slice(0, 2))
    backward(helpers.case_losses(unet, loss_nets, settings, half, helpers.slice_draws(draws, slice(0, 2), 4)),
             helpers.PRECISION)
    one_rank = max(float((p.grad - ddp[n]).abs().max()) for n, p in unet.named_parameters() if p.requires_grad)
    assert one_rank > 30 * worst  # the bound tells an average from one rank's own gradient


def test_stopped_and_resumed_run_equals_uninterrupted(tmp_path):
    """stage2 (SyncNet loss, gradient checkpointing): 4 steps at once == 2 steps, stop, resume for 2, bit for bit;
    the checkpoint loads strictly through the pack's U-Net loader (what Load LatentSync Model calls)."""
    raw = helpers.raw_config("stage2", max_train_steps=4)
    whole = run(raw, tmp_path / "whole")
    first = run(raw, tmp_path / "parts", stop_after=2)
    assert first.global_step == 2 and run_files.resume_path(tmp_path / "parts", 2).is_file()
    rest = run(raw, tmp_path / "parts", resume=True)
    assert rest.history.train_loss_list == whole.history.train_loss_list
    a = torch.load(whole.last_checkpoint, weights_only=True)
    b = torch.load(rest.last_checkpoint, weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    from latentsync.models.unet import load_unet
    from latentsync.pipeline.loading import unet_spec

    spec = unet_spec(str(whole.last_checkpoint))
    loaded = load_unet(str(whole.last_checkpoint), spec.config, dtype=torch.float32)
    assert spec.resolution == helpers.RES
    assert all(torch.equal(v, a["state_dict"][k]) for k, v in loaded.state_dict().items())


def test_tiny_stage1_lowers_its_loss(tmp_path):
    """80 steps of the tiny stage1 config (all parameters, latent MSE, lr 1e-3): the last 20 losses average below
    0.6 x the first 20."""
    raw = helpers.raw_config("stage1", max_train_steps=80, enable_gradient_checkpointing=False)
    raw["data"]["batch_size"] = 1
    raw["optimizer"]["lr"] = 1e-3
    raw["ckpt"]["save_ckpt_steps"] = 80
    losses = run(raw, tmp_path / "run").history.train_loss_list
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    print(f"first 20: {first:.4f}, last 20: {last:.4f}")
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("change, words", [
    (("run", "use_syncnet", "yes"), "run.use_syncnet"),
    (("memory", "precision", "fp8"), "memory.precision"),
    (("data", "resolution", 60), "multiple of 8"),
    (("data", "num_frames", 30), "motion modules cover"),
])
def test_bad_configs_are_refused(change, words):
    raw = helpers.raw_config("stage2")
    section, key, value = change
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match=words):
        parse_config(raw)


def test_trepa_without_videomae_is_refused(tmp_path):
    """The real-file path refuses TREPA without paths.videomae before anything heavy runs."""
    raw = helpers.raw_config("stage2", trepa_loss_weight=10.0)
    with pytest.raises(ConfigError, match="trepa_loss_weight"):
        train_unet(parse_config(raw), tmp_path / "run", device="cpu")


def test_cli_trains_from_files_and_the_node_loader_reads_the_checkpoint(tmp_path):
    """``latentsync train unet --config`` on real files (H.264 + AAC face clips, a tiny whisper, diffusers VAE
    folder, StableSyncNet yaml + checkpoint): 2 stage2 steps; the checkpoint loads as Load LatentSync Model loads
    it (``unet_spec`` + strict ``load_unet``) and in upstream's layout (``{"global_step", "state_dict"}``)."""
    import numpy as np
    import yaml

    import train_syncnet_media as media
    from latentsync.metrics import tiny
    from latentsync.models.unet import load_unet
    from latentsync.pipeline.loading import unet_spec
    from latentsync.tiny_models import write_vae_folder, write_whisper
    from latentsync.train.cli import main as train_main

    clips = []
    for i, (frames, wav) in enumerate(media.fixture_clips()[:2]):
        big = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=helpers.RES,
                                              mode="bilinear").round().clamp(0, 255).to(torch.uint8)
        clips.append(media.write_clip(tmp_path / f"clip{i}.mp4", big.permute(0, 2, 3, 1).numpy(), np.asarray(wav)))
    sync_ckpt = tiny.write_stable_syncnet(tmp_path / "syncnet.pt", helpers.SYNCNET, helpers.SEED)
    sync_yaml = tmp_path / "syncnet.yaml"
    sync_yaml.write_text(yaml.safe_dump({"model": helpers.SYNCNET, "ckpt": {"inference_ckpt_path": str(sync_ckpt)},
                                         "data": {"resolution": 32, "lower_half": True, "num_frames": helpers.FRAMES}}))
    raw = helpers.raw_config("stage2", max_train_steps=2, enable_gradient_checkpointing=False)
    raw["data"].update(train_data_dir=str(tmp_path), syncnet_config_path=str(sync_yaml))
    raw["paths"] = {"vae": str(write_vae_folder(tmp_path / "models")),
                    "whisper": str(write_whisper(tmp_path / "models", helpers.DIM))}
    config = helpers.write_config(tmp_path / "stage2_tiny.yaml", raw)
    assert train_main(["unet", "--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    ckpt = run_files.checkpoint_path(tmp_path / "run", 2)
    data = torch.load(ckpt, weights_only=True)
    assert data["global_step"] == 2 and set(data) >= {"global_step", "state_dict"}
    spec = unet_spec(str(ckpt))
    loaded = load_unet(str(ckpt), spec.config, dtype=torch.float32)
    assert all(torch.equal(v, data["state_dict"][k]) for k, v in loaded.state_dict().items())
    assert train_main(["unet", "--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
