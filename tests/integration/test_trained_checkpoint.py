"""A U-Net checkpoint written by ``latentsync train unet`` loads strictly in Load LatentSync Model and runs in the
shipped lip-sync workflow (issue 15). The run fine-tunes the integration tests' own tiny U-Net (warm start from its
file, same config: 384-wide audio for the tiny Whisper, 4 latent channels for the SD VAE) for 2 stage2 steps on real
clip files; a copy with one tensor cut short is refused with the key named. Tiny models, CPU."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file
from workflow_helpers import SHORT_FRAMES, configure, load_api, nodes_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # train_unet_helpers (tests/unit)

import train_syncnet_media as media  # noqa: E402
import train_unet_helpers as helpers  # noqa: E402
from cli_process import run_cli  # noqa: E402
from latentsync.metrics import tiny  # noqa: E402
from latentsync.tiny_models import write_vae_folder  # noqa: E402
from latentsync.train import run_files  # noqa: E402
from test_comfy_pack import assert_ok, mp4_of, probe_mp4  # noqa: E402

TRAINED_NAME = "trained/unet_trained_step2.pt"
BROKEN_NAME = "trained/unet_trained_broken.pt"
STEPS = 2
# The real console entry point (latentsync.cli.main), made importable next to the test env's CPU torch first.
CLI_CHILD = Path(__file__).resolve().parents[1] / "e2e" / "cli_main_child.py"


def _train(tmp_path: Path, comfy, fixtures_dir: Path) -> Path:
    """``python -m latentsync train unet`` for STEPS stage2 steps, warm-started from the tiny U-Net the server has;
    the checkpoint of the last step."""
    config = json.loads((fixtures_dir / "unet_tiny_config.json").read_text())
    latentsync_dir = Path(comfy.models_dir) / "latentsync"
    for i, (frames, wav) in enumerate(media.fixture_clips()[:2]):
        big = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=helpers.RES,
                                              mode="bilinear").round().clamp(0, 255).to(torch.uint8)
        media.write_clip(tmp_path / f"clip{i}.mp4", big.permute(0, 2, 3, 1).numpy(), np.asarray(wav))
    sync_ckpt = tiny.write_stable_syncnet(tmp_path / "syncnet.pt", helpers.SYNCNET, helpers.SEED)
    sync_yaml = tmp_path / "syncnet.yaml"
    sync_yaml.write_text(yaml.safe_dump({"model": helpers.SYNCNET, "ckpt": {"inference_ckpt_path": str(sync_ckpt)},
                                         "data": {"resolution": 32, "lower_half": True, "num_frames": helpers.FRAMES}}))
    raw = helpers.raw_config("stage2", max_train_steps=STEPS, enable_gradient_checkpointing=False)
    raw["model"] = config  # the integration tiny U-Net's config, not the unit tests' 32-wide one
    raw["ckpt"].update(resume_ckpt_path=str(latentsync_dir / comfy.model_names["unet"]), save_ckpt_steps=STEPS)
    raw["data"].update(train_data_dir=str(tmp_path), syncnet_config_path=str(sync_yaml))
    raw["paths"] = {"vae": str(write_vae_folder(tmp_path / "models")),
                    "whisper": str(latentsync_dir / comfy.model_names["whisper"])}  # the server's 384-wide Whisper
    yaml_path = helpers.write_config(tmp_path / "stage2_tiny.yaml", raw)
    done = run_cli(["train", "unet", "--config", str(yaml_path), "--out", str(tmp_path / "run"), "--device", "cpu"],
                   cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}, executable=[sys.executable, str(CLI_CHILD)])
    assert done.code == 0, done.stderr[-3000:]
    ckpt = run_files.checkpoint_path(tmp_path / "run", STEPS)
    assert ckpt.is_file() and ckpt.with_suffix(".json").is_file(), sorted(p.name for p in ckpt.parent.iterdir())
    return ckpt


def _install(ckpt: Path, latentsync_dir: Path, name: str, state: dict | None = None) -> None:
    """The checkpoint (or ``state`` in its place) as ``models/latentsync/<name>``, its sidecar as ``<stem>.json``
    (the loader's unet_spec looks for the checkpoint's stem + .json)."""
    target = latentsync_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if state is None:
        shutil.copyfile(ckpt, target)
    else:
        torch.save(state, target)
    shutil.copyfile(ckpt.with_suffix(".json"), target.with_suffix(".json"))


def _lipsync(comfy, unet: str, seed: int):
    prompt = configure(load_api("lipsync_basic_api.json"), comfy, steps=1, seed=seed)
    for nid in nodes_of(prompt, "LoadLatentSyncModel"):
        prompt[nid]["inputs"]["unet"] = unet
    return prompt, comfy.run(prompt)


def test_trained_checkpoint_loads_strictly_and_runs_the_workflow(comfy, fixtures_dir, tmp_path):
    ckpt = _train(tmp_path, comfy, fixtures_dir)
    data = torch.load(ckpt, weights_only=True)
    assert data["global_step"] == STEPS
    trained = data["state_dict"]
    untrained = load_file(str(fixtures_dir / "unet_tiny_weights.safetensors"))
    assert sorted(trained) == sorted(untrained)
    changed = [k for k in trained if not torch.equal(trained[k].float(), untrained[k].float())]
    assert changed and all("motion_modules." in k or "attentions." in k for k in changed), changed[:5]

    latentsync_dir = Path(comfy.models_dir) / "latentsync"
    _install(ckpt, latentsync_dir, TRAINED_NAME)
    broken = dict(trained)
    cut = changed[0]
    broken[cut] = broken[cut][:1]
    _install(ckpt, latentsync_dir, BROKEN_NAME, {"state_dict": broken, "global_step": STEPS})
    choices = comfy.object_info()["LoadLatentSyncModel"]["input"]["required"]["unet"][0]
    assert TRAINED_NAME in choices and BROKEN_NAME in choices, choices

    prompt, run = _lipsync(comfy, TRAINED_NAME, seed=31)
    assert_ok(comfy, run)
    assert nodes_of(prompt, "LoadLatentSyncModel")[0] in run.executed_nodes()
    frames, _, _, size = probe_mp4(mp4_of(comfy, run, nodes_of(prompt, "LatentSyncMuxAudio")[0]))
    assert frames == SHORT_FRAMES and size == (256, 256)

    _, refused = _lipsync(comfy, BROKEN_NAME, seed=32)
    assert not refused.ok and refused.outcome == "execution_error", refused.outcome
    message = refused.error()
    assert "LoadLatentSyncModel" in message and cut in message and "does not match" in message, message
