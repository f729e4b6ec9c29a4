"""StableSyncNet training on torch.distributed DDP: upstream's ``scripts/train_syncnet.py``, resumable.

Each process takes ``data.batch_size`` samples per micro-step; sample ``k`` of the run is drawn from its own
generator (``data.syncnet_samples.sample_rng``), and micro-step ``j`` of the run hands samples
``[(j * W + r) * B, (j * W + r + 1) * B)`` to rank ``r`` of ``W``: a run on W processes sees the batches a
one-process run with ``W * B`` samples per step sees. Gradients are averaged by DDP (gloo on CPU, NCCL on CUDA).
Every ``ckpt.save_ckpt_steps`` steps, and at the last one, rank 0 writes upstream's weights checkpoint and a
resume file; ``resume=True`` continues from the newest one so that the result equals an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from ..data.syncnet_samples import Clip, SyncNetSamples, clip_paths_exist, list_clips, load_clip
from ..metrics.stable_syncnet import StableSyncNet
from ..metrics.syncnet_accuracy import THRESHOLD
from . import processes as procs_mod
from . import run_files
from .sync_loss import sync_losses
from .syncnet_config import ConfigError, SyncNetTrainConfig
from .syncnet_step import Precision, backward, model_inputs, new_optimizer, precision_for, update

log = logging.getLogger("latentsync.train")
VAL_SAMPLE_LIMIT = 640  # upstream: validation batches hold at most 640 frames


@dataclass
class TrainResult:
    """Where the run is, how far it got, and its loss lists."""

    run_dir: Path
    global_step: int
    history: run_files.History
    last_checkpoint: Path | None
    is_main: bool = True


class RunBatches(Sampler[list[int]]):
    """This rank's sample indices, micro-step after micro-step, from micro-step ``first`` on (endless)."""

    def __init__(self, first: int, batch: int, rank: int, world: int):
        self.first, self.batch, self.rank, self.world = first, batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        j = self.first
        while True:
            base = (j * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))
            j += 1


def clip_list(data_dir: str, fileslist: str, which: str) -> list[str]:
    """The clips of ``data.<which>_fileslist`` / ``data.<which>_data_dir``; unreadable or empty -> ConfigError."""
    key = f"data.{which}_fileslist" if fileslist else f"data.{which}_data_dir"
    try:
        paths = list_clips(data_dir, fileslist)
    except OSError as exc:
        raise ConfigError(f"config key '{key}': cannot read {exc.filename}: {exc.strerror}.") from exc
    if not paths:
        raise ConfigError(f"config key '{key}' gives no clips; list mp4 files (one per line) or give a folder of them.")
    return paths


def _run_dir(cfg: SyncNetTrainConfig, out: str | os.PathLike | None, resume: bool, procs: procs_mod.Processes) -> Path:
    """Rank 0 picks and checks the run folder; every rank gets it (or the same error)."""
    problem, path = None, None
    if procs.is_main:
        if out is None:
            if resume:
                problem = "--resume needs --out: the run folder to continue."
            else:
                stamp = datetime.datetime.now().strftime("%Y_%m_%d-%H%M%S")
                path = Path(cfg.train_output_dir or ".") / f"train-{stamp}"
        else:
            path = Path(out)
        if path is not None and problem is None:
            if resume and run_files.latest_resume(path) is None:
                problem = (f"--resume: {path} has no checkpoints/resume-<step>.pt with its checkpoint-<step>.pt; "
                           f"give the folder of a run this trainer started.")
            elif not resume and path.exists() and any(path.iterdir()):
                problem = f"--out {path} is not empty; add --resume to continue that run, or pick a new folder."
        if problem is None:
            (path / run_files.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
            copy = path / "config.yaml"
            if not copy.exists() and os.path.isfile(cfg.source):
                shutil.copyfile(cfg.source, copy)
    problem, path = procs_mod.broadcast_object((problem, None if path is None else str(path)), procs)
    if problem:
        raise ConfigError(problem)
    return Path(path)


def _warm_start(model: StableSyncNet, cfg: SyncNetTrainConfig) -> tuple[int, run_files.History]:
    """Upstream's ``ckpt.resume_ckpt_path``: its weights (strict), and its step and loss lists when present."""
    from ..metrics.checkpoints import check_state
    from ..models.checkpoint import extract_state_dict, read_checkpoint

    path = cfg.resume_ckpt_path
    if not os.path.isfile(path):
        raise ConfigError(f"config key 'ckpt.resume_ckpt_path' is {path!r}, which is not a file; give a "
                          f"checkpoint-<step>.pt / stable_syncnet.pt or write \"\".")
    data = read_checkpoint(path)
    state = extract_state_dict(data, path)
    check_state(model, state, path, "StableSyncNet")
    model.load_state_dict(state)
    if "global_step" in data:
        return int(data["global_step"]), run_files.History.from_dict(data)
    return 0, run_files.History()


def _loader(cfg: SyncNetTrainConfig, procs: procs_mod.Processes, first_micro: int,
            clip_loader: Callable[[str], Clip]) -> Iterator[dict[str, torch.Tensor]]:
    """The endless batch iterator of this rank from micro-step ``first_micro``."""
    paths = clip_list(cfg.train_data_dir, cfg.train_fileslist, "train")
    data = SyncNetSamples(paths, num_frames=cfg.num_frames, resolution=cfg.resolution, fps=cfg.video_fps,
                          seed=cfg.seed, cache_size=cfg.clip_cache, loader=clip_loader)
    sampler = RunBatches(first_micro, cfg.batch_size, procs.rank, procs.world_size)
    # Its own generator: creating the iterator draws a worker seed, which must not move the global RNG (dropout)
    # differently in a resumed run than in an uninterrupted one. The samples do not depend on it.
    own = torch.Generator().manual_seed(cfg.seed + procs.rank)
    return iter(DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers, generator=own))


def _validation_set(cfg: SyncNetTrainConfig, clip_loader: Callable[[str], Clip]) -> SyncNetSamples | None:
    """The fixed validation samples (``num_val_samples`` of the val clips), or None when there are none."""
    if cfg.num_val_samples == 0 or not (cfg.val_fileslist or cfg.val_data_dir):
        return None
    paths = clip_list(cfg.val_data_dir, cfg.val_fileslist, "val")
    return SyncNetSamples(paths, num_frames=cfg.num_frames, resolution=cfg.resolution, fps=cfg.video_fps,
                          seed=cfg.seed, stream="val", cache_size=cfg.clip_cache, loader=clip_loader,
                          length=cfg.num_val_samples)


@torch.no_grad()
def validate(model: StableSyncNet, samples: SyncNetSamples, cfg: SyncNetTrainConfig, precision: Precision
             ) -> tuple[float, float]:
    """Mean loss and accuracy (similarity > 0.5 called in sync, as ``eval_syncnet_acc``) over the val samples."""
    was_training = model.training
    model.eval()
    batch = max(1, min(VAL_SAMPLE_LIMIT // cfg.num_frames, cfg.batch_size))
    losses, correct = [], 0
    for first in range(0, len(samples), batch):
        items = [samples[k] for k in range(first, min(first + batch, len(samples)))]
        stacked = {key: torch.stack([it[key] for it in items]) for key in items[0]}
        frames, mel, y = model_inputs(stacked, cfg.lower_half, precision)
        with precision.context():
            vision, audio = model(frames, mel)
        losses.append(sync_losses(vision, audio, y))
        sims = torch.nn.functional.cosine_similarity(vision.float(), audio.float())
        correct += int(((sims > THRESHOLD) == y.reshape(-1).bool()).sum())
    model.train(was_training)
    return float(torch.cat(losses).mean()), correct / len(samples)


def _save(run_dir: Path, model: StableSyncNet, optimizer: torch.optim.Optimizer, precision: Precision, step: int,
          next_micro: int, history: run_files.History, procs: procs_mod.Processes) -> Path:
    """Every rank's RNG state to rank 0, which writes the weights checkpoint, the resume file and loss.tsv."""
    rng = procs_mod.gather_objects(run_files.rng_state(procs.device), procs)
    path = run_files.checkpoint_path(run_dir, step)
    if procs.is_main:
        run_files.save_weights(run_dir, model.state_dict(), step, history)
        run_files.save_resume(run_dir, step=step, next_micro=next_micro, world_size=procs.world_size,
                              optimizer=optimizer.state_dict(),
                              scaler=None if precision.scaler is None else precision.scaler.state_dict(),
                              rng_states=rng, history=history)
        write_loss_table(run_dir, history)
    procs_mod.barrier(procs)
    return path


def write_loss_table(run_dir: Path, history: run_files.History) -> None:
    """``loss.tsv``: one row per step (train loss), validation loss and accuracy where measured."""
    val = dict(zip(history.val_step_list, zip(history.val_loss_list, history.val_accuracy_list)))
    rows = ["step\ttrain_loss\tval_loss\tval_accuracy"]
    for step, loss in zip(history.train_step_list, history.train_loss_list):
        v = val.get(step)
        rows.append(f"{step}\t{loss:.6f}\t" + ("\t" if v is None else f"{v[0]:.6f}\t{v[1]:.4f}"))
    run_files.atomic_text("\n".join(rows) + "\n", run_dir / "loss.tsv")


def _resume(run_dir: Path, model: StableSyncNet, optimizer: torch.optim.Optimizer, precision: Precision,
            procs: procs_mod.Processes) -> tuple[int, int, run_files.History]:
    """Weights, optimizer, scaler, RNG and data position of the run's newest resume file."""
    path = run_files.latest_resume(run_dir)
    data = run_files.read_resume(path)
    step = int(data["global_step"])
    weights = torch.load(run_files.checkpoint_path(run_dir, step), map_location="cpu", weights_only=True)
    model.load_state_dict(weights["state_dict"])
    optimizer.load_state_dict(data["optimizer"])
    if precision.scaler is not None and data.get("scaler"):
        precision.scaler.load_state_dict(data["scaler"])
    if data["world_size"] == procs.world_size:
        run_files.set_rng_state(data["rng"][procs.rank], procs.device)
    elif procs.is_main:
        log.warning("resuming a %d-process run on %d processes: the batches change size, the run is not the "
                    "uninterrupted one", data["world_size"], procs.world_size)
    micro = int(data["next_micro_step"]) if data["world_size"] == procs.world_size else None
    if micro is None:  # same samples consumed, new slicing
        micro = math.ceil(int(data["next_micro_step"]) * data["world_size"] / procs.world_size)
    return step, micro, run_files.History.from_dict(data["history"])


def train_syncnet(cfg: SyncNetTrainConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
                  device: str | None = None, stop_after: int | None = None, log_every: int = 10,
                  clip_loader: Callable[[str], Clip] = load_clip) -> TrainResult:
    """Train (or continue) a StableSyncNet run; ``stop_after`` ends this process's part at that step (saved)."""
    procs = procs_mod.start(device)
    try:
        return _train(cfg, out, resume, procs, stop_after, log_every, clip_loader)
    finally:
        procs_mod.finish(procs)


def _train(cfg: SyncNetTrainConfig, out: str | os.PathLike | None, resume: bool, procs: procs_mod.Processes,
           stop_after: int | None, log_every: int, clip_loader: Callable[[str], Clip]) -> TrainResult:
    """The run itself, inside a started process group."""
    paths = clip_list(cfg.train_data_dir, cfg.train_fileslist, "train") if clip_loader is load_clip else []
    missing = clip_paths_exist(paths)
    if missing:
        raise ConfigError(f"{len(missing)} training clips are missing (e.g. {missing[0]}); fix data.train_fileslist.")
    run_dir = _run_dir(cfg, out, resume, procs)
    torch.manual_seed(cfg.seed)  # the same initial weights on every process
    model = StableSyncNet(cfg.model)
    step, history = (0, run_files.History()) if resume or not cfg.resume_ckpt_path else _warm_start(model, cfg)
    torch.manual_seed(cfg.seed + procs.rank)  # as upstream's set_seed(seed + rank): per-process dropout
    if procs.device.type == "cuda":
        torch.cuda.manual_seed(cfg.seed + procs.rank)
    model.to(procs.device).train()
    optimizer = new_optimizer(model, cfg.lr)
    precision = precision_for(procs.device, cfg.mixed_precision_training)
    micro = 0
    if resume:
        step, micro, history = _resume(run_dir, model, optimizer, precision, procs)
    ddp = DistributedDataParallel(model, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)
    batches = _loader(cfg, procs, micro, clip_loader)
    val = _validation_set(cfg, clip_loader) if procs.is_main else None
    accum = cfg.gradient_accumulation_steps
    last: Path | None = None
    if procs.is_main:
        log.info("run folder %s: %d process(es) on %s (%s), %d samples per step, from step %d to %d",
                 run_dir, procs.world_size, procs.device, procs.backend,
                 cfg.batch_size * procs.world_size * accum, step, cfg.max_train_steps)
    while step < cfg.max_train_steps and (stop_after is None or step < stop_after):
        step_loss = 0.0
        for m in range(accum):
            sync = contextlib.nullcontext() if m == accum - 1 else ddp.no_sync()
            with sync:
                loss = backward(ddp, next(batches), lower_half=cfg.lower_half, accumulation=accum, precision=precision)
            step_loss += procs_mod.mean_over_processes(float(loss), procs)
            micro += 1
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"the training loss is {step_loss} at step {step + 1}; lower optimizer.lr or "
                                     f"check the clips.")
        norm = update(ddp.parameters(), optimizer, cfg.max_grad_norm, precision)
        step += 1
        history.train_step_list.append(step)
        history.train_loss_list.append(step_loss)
        if val is not None and step % cfg.validation_steps == 0:
            val_loss, acc = validate(model, val, cfg, precision)
            history.val_step_list.append(step)
            history.val_loss_list.append(val_loss)
            history.val_accuracy_list.append(acc)
            log.info("step %d: validation loss %.4f, accuracy %.3f", step, val_loss, acc)
        if procs.is_main and (step == 1 or step % log_every == 0 or step == cfg.max_train_steps):
            log.info("step %d/%d: loss %.4f, grad norm %.3f", step, cfg.max_train_steps, step_loss, norm)
        if step % cfg.save_ckpt_steps == 0 or step == cfg.max_train_steps or step == stop_after:
            last = _save(run_dir, model, optimizer, precision, step, micro, history, procs)
    return TrainResult(run_dir, step, history, last, procs.is_main)
