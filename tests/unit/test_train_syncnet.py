"""StableSyncNet training on real face clips (mp4, H.264 + AAC) with the tiny model, on the CPU with gloo:
2 processes under torchrun average to the 1-process gradient of the whole batch; a stopped and resumed run equals
the uninterrupted one bit for bit; the checkpoint loads strictly in the pack's loader; bad configs and folders are
refused with the key / the fix named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_syncnet_media as media  # noqa: E402

from latentsync.cli import run as cli_run  # noqa: E402
from latentsync.metrics import tiny  # noqa: E402
from latentsync.metrics.stable_syncnet import StableSyncNet, load_stable_syncnet  # noqa: E402
from latentsync.train import run_files  # noqa: E402
from latentsync.train.syncnet_config import ConfigError, load_config, parse_config  # noqa: E402
from latentsync.train.syncnet_loop import train_syncnet  # noqa: E402
from latentsync.train.syncnet_step import Precision, backward  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("train_ddp_child.py")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A files list of the fixture's three face clips written as mp4s."""
    folder = tmp_path_factory.mktemp("clips")
    return media.files_list(folder, media.write_clips(folder))


def config_file(folder: Path, clips: Path, **changes) -> Path:
    """A yaml config of the tiny model on the clips."""
    folder.mkdir(parents=True, exist_ok=True)
    return media.write_config(folder / "tiny.yaml", media.config_dict(clips, **changes))


def test_two_gloo_processes_average_to_the_whole_batch_gradient(clips, tmp_path):
    """torchrun, 2 CPU processes, 2 samples each: DDP's averaged gradient equals 1 process on all 4 samples;
    a 2-process run of 2 steps follows the 1-process run with 4 samples per step."""
    cfg_path = config_file(tmp_path, clips, **{"run.max_train_steps": 2})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(CHILD), str(tmp_path), str(cfg_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config(cfg_path)
    sys.path.insert(0, str(CHILD.parent))
    import train_ddp_child as child

    model = StableSyncNet(cfg.model)
    model.load_state_dict(tiny.stable_syncnet_state(cfg.model, child.WEIGHTS_SEED))
    backward(model, child.batch_of(cfg, 0, 2 * cfg.batch_size), lower_half=True, accumulation=1,
             precision=Precision(torch.device("cpu")))
    ddp_grads = torch.load(tmp_path / "grads_ddp.pt", weights_only=True)
    scale = max(float(g.abs().max()) for g in ddp_grads.values())
    worst = max(float((p.grad - ddp_grads[n]).abs().max()) for n, p in model.named_parameters())
    assert worst <= 1e-5 * scale, (worst, scale)

    one = train_syncnet(parse_config(media.config_dict(clips, **{"run.max_train_steps": 2, "data.batch_size": 4})),
                        tmp_path / "one", device="cpu")
    two = run_files.read_resume(run_files.resume_path(tmp_path / "run", 2))
    assert two["world_size"] == 2 and two["next_micro_step"] == 2
    losses_two = two["history"]["train_loss_list"]
    assert losses_two == pytest.approx(one.history.train_loss_list, abs=1e-4)


def test_stopped_and_resumed_run_equals_uninterrupted(clips, tmp_path):
    """Through the command: 4 steps with accumulation 2 and dropout in one go, and 2 + a resumed 2; weights,
    optimizer state and losses equal bit for bit; the checkpoint loads strictly in load_stable_syncnet."""
    raw = media.config_dict(clips, **{"data.gradient_accumulation_steps": 2})
    for tower in raw["model"].values():
        tower["dropout"] = 0.1  # the RNG state matters
    cfg_path = media.write_config(tmp_path / "tiny.yaml", raw)
    assert cli_run(["train", "syncnet", "--config", str(cfg_path), "--out", str(tmp_path / "full"),
                    "--device", "cpu"]) == 0
    cfg = load_config(cfg_path)
    part = train_syncnet(cfg, tmp_path / "part", device="cpu", stop_after=2)
    assert part.global_step == 2 and not run_files.checkpoint_path(tmp_path / "part", 4).exists()
    torch.manual_seed(123)  # whatever the process did in between, the resume restores the RNG
    assert cli_run(["train", "syncnet", "--config", str(cfg_path), "--out", str(tmp_path / "part"), "--resume",
                    "--device", "cpu"]) == 0
    full = torch.load(run_files.checkpoint_path(tmp_path / "full", 4), weights_only=True)
    resumed = torch.load(run_files.checkpoint_path(tmp_path / "part", 4), weights_only=True)
    assert full["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert full["train_loss_list"] == resumed["train_loss_list"] and full["global_step"] == 4
    opt_full = run_files.read_resume(run_files.resume_path(tmp_path / "full", 4))["optimizer"]["state"]
    opt_resumed = run_files.read_resume(run_files.resume_path(tmp_path / "part", 4))["optimizer"]["state"]
    for index, state in opt_full.items():
        assert all(torch.equal(v, opt_resumed[index][k]) for k, v in state.items())
    model = load_stable_syncnet(run_files.checkpoint_path(tmp_path / "part", 4), cfg.model)
    assert all(torch.equal(v, full["state_dict"][k]) for k, v in model.state_dict().items())
    assert (tmp_path / "full" / "config.yaml").is_file()
    rows = (tmp_path / "full" / "loss.tsv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("step\ttrain_loss")


def test_validation_and_warm_start(clips, tmp_path):
    """Validation loss and accuracy at validation steps; upstream's ckpt.resume_ckpt_path continues its step."""
    cfg = parse_config(media.config_dict(clips, **{"run.max_train_steps": 2, "run.validation_steps": 1,
                                                   "data.val_fileslist": str(clips), "data.num_val_samples": 3}))
    first = train_syncnet(cfg, tmp_path / "a", device="cpu")
    assert first.history.val_step_list == [1, 2] and all(0 <= a <= 1 for a in first.history.val_accuracy_list)
    warm = parse_config(media.config_dict(clips, **{"run.max_train_steps": 3,
                                                    "ckpt.resume_ckpt_path": str(first.last_checkpoint)}))
    second = train_syncnet(warm, tmp_path / "b", device="cpu")
    assert second.history.train_step_list == [1, 2, 3]


def test_bad_configs_and_folders_are_refused(clips, tmp_path, capsys):
    """Each message names the key or the option, and what to write."""
    cases = [({"data.batch_size": 0}, "data.batch_size"), ({"optimizer.lr": "fast"}, "optimizer.lr"),
             ({"data.latent_space": True}, "data.latent_space"), ({"data.num_frames": 8}, "in_channels"),
             ({"data.train_fileslist": ""}, "data.train_fileslist"), ({"data.audio_sample_rate": 22050}, "16000")]
    for change, words in cases:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            parse_config(media.config_dict(clips, **change))
    raw = media.config_dict(clips)
    del raw["optimizer"]["max_grad_norm"]
    with pytest.raises(ConfigError, match=r"optimizer\.max_grad_norm' is missing"):
        parse_config(raw)
    assert parse_config(media.config_dict(clips, **{"optimizer.lr": "1e-5"})).lr == 1e-5  # PyYAML's reading of 1e-5
    cfg_path = config_file(tmp_path, clips)
    owned = tmp_path / "mine"
    owned.mkdir()
    (owned / "notes.txt").write_text("keep")
    assert cli_run(["train", "syncnet", "--config", str(cfg_path), "--out", str(owned)]) == 2
    assert "not empty" in capsys.readouterr().err and (owned / "notes.txt").read_text() == "keep"
    assert cli_run(["train", "syncnet", "--config", str(cfg_path), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "resume" in capsys.readouterr().err
    assert cli_run(["train", "syncnet", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the config" in capsys.readouterr().err
    gone = config_file(tmp_path / "gone", clips, **{"data.train_fileslist": str(tmp_path / "nope.txt")})
    assert cli_run(["train", "syncnet", "--config", str(gone), "--out", str(tmp_path / "r")]) == 2
    assert "data.train_fileslist" in capsys.readouterr().err
