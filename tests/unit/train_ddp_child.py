"""Run under torchrun by test_train_syncnet.py: one DDP gradient on this rank's half of a batch, then a short run.

argv: OUT_DIR CONFIG_YAML. Writes OUT_DIR/grads_ddp.pt (rank 0: the averaged gradients) and OUT_DIR/run (the
training run folder, 2 processes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from latentsync.data.syncnet_samples import SyncNetSamples, list_clips
from latentsync.metrics import tiny
from latentsync.metrics.stable_syncnet import StableSyncNet
from latentsync.train import processes
from latentsync.train.syncnet_config import load_config
from latentsync.train.syncnet_loop import train_syncnet
from latentsync.train.syncnet_step import Precision, backward

WEIGHTS_SEED = 5


def batch_of(cfg, first: int, count: int) -> dict:
    """Samples first..first+count-1 of the run, collated."""
    data = SyncNetSamples(list_clips(cfg.train_data_dir, cfg.train_fileslist), num_frames=cfg.num_frames,
                          resolution=cfg.resolution, fps=cfg.video_fps, seed=cfg.seed)
    items = [data[k] for k in range(first, first + count)]
    return {key: torch.stack([it[key] for it in items]) for key in items[0]}


def main() -> None:
    out, cfg = Path(sys.argv[1]), load_config(sys.argv[2])
    procs = processes.start("cpu")
    assert procs.world_size == 2 and procs.backend == "gloo"
    model = StableSyncNet(cfg.model)
    model.load_state_dict(tiny.stable_syncnet_state(cfg.model, WEIGHTS_SEED))
    ddp = DistributedDataParallel(model)
    half = cfg.batch_size
    backward(ddp, batch_of(cfg, procs.rank * half, half), lower_half=cfg.lower_half, accumulation=1,
             precision=Precision(torch.device("cpu")))
    if procs.is_main:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out / "grads_ddp.pt")
    train_syncnet(cfg, out / "run", device="cpu", log_every=1000)
    processes.finish(procs)


if __name__ == "__main__":
    main()
