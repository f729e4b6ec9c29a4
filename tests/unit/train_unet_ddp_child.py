"""Run under torchrun by test_train_unet.py: this rank's DDP gradient of a stage2 step on its half of a batch.

argv: OUT_DIR. Rank 0 writes OUT_DIR/grads_ddp.pt (the gradients DDP averaged over the two processes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cpu_torchvision import stub_registrations_if_needed  # noqa: E402

stub_registrations_if_needed()

import train_unet_helpers as helpers  # noqa: E402
from latentsync.train import processes  # noqa: E402
from latentsync.train.unet_step import backward  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    procs = processes.start("cpu")
    assert procs.world_size == 2 and procs.backend == "gloo"
    unet, nets, settings, batch, draws = helpers.ddp_case()
    half = batch["gt_pixel_values"].shape[0] // 2
    part = slice(procs.rank * half, (procs.rank + 1) * half)
    ddp = DistributedDataParallel(unet)
    losses = helpers.case_losses(ddp, nets, settings, helpers.slice_batch(batch, part), helpers.slice_draws(draws, part, 4))
    backward(losses, helpers.PRECISION)
    if procs.is_main:
        torch.save({n: p.grad for n, p in unet.named_parameters() if p.requires_grad}, out / "grads_ddp.pt")
    processes.finish(procs)


if __name__ == "__main__":
    main()
