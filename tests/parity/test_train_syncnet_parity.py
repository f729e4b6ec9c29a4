"""StableSyncNet training against upstream's ``scripts/train_syncnet.py`` (two steps on random weights).

Reads the fixture folder from $LATENTSYNC_TRAIN_SYNCNET_FIXTURES (default tests/fixtures/train_syncnet), written
by tools/fixtures_gen/gen_train_syncnet_fixtures.py: the clips, every random draw of upstream's dataset, its
samples, per-sample losses and embeddings, gradients before clipping, and upstream's checkpoint after step 2.
Bounds are the manifest's ``check``; any fixture set in this format must pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

import pytest
import torch

from latentsync.data.syncnet_samples import build_sample, clip_from_arrays, draw
from latentsync.metrics import tiny
from latentsync.metrics.stable_syncnet import StableSyncNet
from latentsync.train.sync_loss import sync_losses
from latentsync.train.syncnet_config import parse_config
from latentsync.train.syncnet_step import Precision, backward, model_inputs, new_optimizer, update

REPO = Path(__file__).resolve().parents[2]


def fixture_dir() -> Path:
    """$LATENTSYNC_TRAIN_SYNCNET_FIXTURES or the in-repo default."""
    return Path(os.environ.get("LATENTSYNC_TRAIN_SYNCNET_FIXTURES", REPO / "tests" / "fixtures" / "train_syncnet")).resolve()


@pytest.fixture(scope="module")
def fx() -> dict:
    """Manifest, config and tensors of the fixture."""
    from safetensors.torch import load_file

    path = fixture_dir()
    if not (path / "manifest.json").is_file():
        pytest.fail(f"train_syncnet fixtures not found at {path}; set LATENTSYNC_TRAIN_SYNCNET_FIXTURES to a folder "
                    f"made by tools/fixtures_gen/gen_train_syncnet_fixtures.py")
    manifest = json.loads((path / "manifest.json").read_text())
    config = json.loads((path / manifest["generation_params"]["config"].split()[0]).read_text())
    return {"manifest": manifest, "raw": config, "cfg": parse_config(config), "t": load_file(str(path / "outputs.safetensors"))}


def clips(t: dict) -> list:
    """The fixture's clips as this library's Clip objects (float samples = int16 / 32768, as decord gives)."""
    out, i = [], 0
    while f"clip{i}.frames" in t:
        out.append(clip_from_arrays(t[f"clip{i}.frames"], t[f"clip{i}.wav_int16"].float() / 32768.0))
        i += 1
    return out


class RecordingRandom(random.Random):
    """random.Random that logs (kind, a, b, value) per randint (kind 0) / choice of a bool (kind 1), as the fixture."""

    calls: list

    def randint(self, a: int, b: int) -> int:
        value = super().randint(a, b)
        self.calls.append((0, a, b, value))
        return value

    def choice(self, seq):
        value = super().choice(seq)
        self.calls.append((1, 0, 1, int(value)))
        return value


def test_many_draws_equal_upstream(fx):
    """Hundreds more draws (upstream's dataset seeded afresh): the same calls, retries included (short clip,
    audio ending before the window, wrong start equal to the start)."""
    t, cfg, extra = fx["t"], fx["cfg"], fx["manifest"]["generation_params"]["extra_draws"]
    data = clips(t)
    rng = RecordingRandom(extra["seed"])
    rng.calls = []
    for _ in range(extra["count"]):
        draw(rng, len(data), lambda i: (data[i].frames.shape[0], data[i].mel.shape[1]), cfg.num_frames, cfg.video_fps)
    assert rng.calls == [tuple(c) for c in t[extra["calls"]].tolist()]


def upstream_batch(t: dict, step: int, batch: int) -> dict:
    """Upstream's collated batch of ``step`` (1-based) from its recorded samples."""
    ks = range((step - 1) * batch, step * batch)
    return {"frames": torch.stack([(t[f"sample{k}.frames_u8"].float() / 255.0 - 0.5) / 0.5 for k in ks]),
            "audio_samples": torch.stack([t[f"sample{k}.mel"] for k in ks]),
            "y": torch.stack([t[f"sample{k}.y"] for k in ks])}


def test_samples_equal_upstream_dataset(fx):
    """Draws from a generator seeded as upstream's run.seed, and the samples built from them, are upstream's."""
    t, cfg, check = fx["t"], fx["cfg"], fx["manifest"]["check"]
    data = clips(t)
    rng = RecordingRandom(cfg.seed)
    calls = [tuple(c) for c in t["draw_calls"].tolist()]
    k = 0
    while f"sample{k}.y" in t:
        first, last = t[f"sample{k}.calls"].tolist()
        rng.calls = []
        choice = draw(rng, len(data), lambda i: (data[i].frames.shape[0], data[i].mel.shape[1]), cfg.num_frames,
                      cfg.video_fps)
        assert rng.calls == calls[first:last], f"sample {k}: our draws (randint/choice calls) differ from upstream's"
        sample = build_sample(data[choice.clip], choice, cfg.num_frames, cfg.resolution, cfg.video_fps)
        u8 = torch.round(sample["frames"] * 127.5 + 127.5).to(torch.uint8)
        diff = (u8.int() - t[f"sample{k}.frames_u8"].int()).abs().max().item()
        assert diff <= check["frames_uint8"]["max_abs_diff"], f"sample {k}: frames differ by {diff} levels"
        assert torch.allclose(sample["audio_samples"], t[f"sample{k}.mel"], rtol=0, atol=check["mel"]["atol"])
        assert torch.equal(sample["y"], t[f"sample{k}.y"])
        k += 1
    assert k == fx["manifest"]["generation_params"]["steps"] * fx["manifest"]["generation_params"]["batch_size"]


@contextlib.contextmanager
def torch_threads(count: int):
    """Run at the generator's intra-op thread count, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_two_steps_equal_upstream(fx):
    """Losses, embeddings, gradients (before clipping), their norm, and the weights after two AdamW steps.

    At the generator's thread count: Adam's first steps divide each gradient by its own size, so a 1e-7
    rounding difference (another thread count: gradients within 1.4e-6 of their largest value) in a near-zero
    gradient moves that weight by up to lr; at the same count the run is exact on the generator machine."""
    with torch_threads(int(fx["manifest"]["generated_with"]["threads"])):
        two_steps(fx)


def two_steps(fx: dict) -> None:
    """The two steps of test_two_steps_equal_upstream."""
    t, cfg, check, gp = fx["t"], fx["cfg"], fx["manifest"]["check"], fx["manifest"]["generation_params"]
    init = tiny.stable_syncnet_state(cfg.model, gp["initial_weights"]["seed"])
    assert tiny.state_digest(init) == gp["initial_weights"]["digest"]
    model = StableSyncNet(cfg.model)
    model.load_state_dict(init)
    model.train()
    optimizer = new_optimizer(model, cfg.lr)
    precision = Precision(torch.device("cpu"))
    results = fx["manifest"]["results"]
    for step in (1, 2):
        batch = upstream_batch(t, step, gp["batch_size"])
        with torch.no_grad():
            frames, mel, y = model_inputs(batch, cfg.lower_half, precision)
            vision, audio = model(frames, mel)
            losses = sync_losses(vision, audio, y)
        assert (vision - t[f"step{step}.vision"]).abs().max() <= check["embeddings"]["atol"]
        assert (audio - t[f"step{step}.audio"]).abs().max() <= check["embeddings"]["atol"]
        assert (losses - t[f"step{step}.sample_losses"]).abs().max() <= check["sample_losses"]["atol"]
        loss = backward(model, batch, lower_half=cfg.lower_half, accumulation=1, precision=precision)
        assert abs(float(loss) - results["step_losses"][step - 1]) <= check["loss"]["atol"]
        if step == 1:
            grads = {n: p.grad for n, p in model.named_parameters()}
            assert grads.keys() == {k[len("grad1."):] for k in t if k.startswith("grad1.")}
            scale = max(float(t[f"grad1.{n}"].abs().max()) for n in grads)
            worst = max(float((g - t[f"grad1.{n}"]).abs().max()) for n, g in grads.items())
            assert worst <= check["grads"]["atol_relative_to_max"] * scale, (worst, scale)
        norm = update(model.parameters(), optimizer, cfg.max_grad_norm, precision)
        assert norm == pytest.approx(results["grad_norms"][step - 1], rel=check["grad_norm"]["rtol"])
    for name, w in model.state_dict().items():
        ref = t[f"weights{gp['steps']}.{name}"]
        assert (w - ref).abs().max() <= check["weights_after"]["atol"], name


def test_checkpoint_has_upstreams_layout(fx, tmp_path):
    """run_files.save_weights writes upstream's checkpoint dict: the same keys and value types, the same weights."""
    from latentsync.train import run_files

    t, cfg = fx["t"], fx["cfg"]
    model = StableSyncNet(cfg.model)
    history = run_files.History([1, 2], [0.5, 0.25])
    path = run_files.save_weights(tmp_path, model.state_dict(), 2, history)
    ours = torch.load(path, weights_only=True)
    assert {k: type(v).__name__ for k, v in ours.items()} == fx["manifest"]["results"]["checkpoint_keys"]
    assert ours["state_dict"].keys() == {k[len("weights2."):] for k in t if k.startswith("weights2.")}
    assert ours["train_step_list"] == [1, 2] and ours["global_step"] == 2
