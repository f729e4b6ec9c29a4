"""``latentsync train syncnet|unet --config X.yaml [--out DIR] [--resume]``: the training command.

One command for every scale: run it plainly for one process (a GPU if there is one, else the CPU), or under
``torchrun --nproc-per-node N [--nnodes M ...] -m latentsync train syncnet ...`` for N processes per host on M
hosts; the process group comes from torchrun's environment (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..exit_codes import EXIT_ERROR, EXIT_OK, EXIT_USAGE

log = logging.getLogger("latentsync.train")
MODELS = ("syncnet", "unet")


def build_parser(prog: str = "latentsync train") -> argparse.ArgumentParser:
    """The ``train`` subcommand's options."""
    p = argparse.ArgumentParser(prog=prog, description="Train LatentSync's networks (upstream's yaml configs).")
    p.add_argument("model", choices=MODELS, help="what to train: syncnet (StableSyncNet, configs/syncnet/*.yaml) or unet "
                                                   "(configs/unet/stage1|stage2|stage2_efficient.yaml)")
    p.add_argument("--config", required=True, help="upstream-format yaml (e.g. configs/syncnet/syncnet_16_pixel_attn.yaml)")
    p.add_argument("--out", default=None, help="the run folder (default: data.train_output_dir/train-<date-time>); "
                                               "must be new or empty unless --resume")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest resume file")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    p.add_argument("--log-every", type=int, default=10, help="log the loss every N steps (default 10)")
    return p


def main(argv: Sequence[str], prog: str = "latentsync train") -> int:
    """Parse, check the config, train; exit codes as the rest of the command."""
    args = build_parser(prog).parse_args(list(argv))
    handler = None
    if not logging.getLogger().handlers and not log.handlers:  # the command's own lines, removed again at the end
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = handler is None
    try:
        return _run(args)
    finally:
        log.setLevel(level)
        log.propagate = propagate
        if handler is not None:
            log.removeHandler(handler)


def _run(args: argparse.Namespace) -> int:
    """Check the config, then train; errors become one line and an exit code."""
    from .syncnet_config import ConfigError

    if args.model == "unet":
        from .unet_config import load_config
        from .unet_loop import train_unet as train
    else:
        from .syncnet_config import load_config
        from .syncnet_loop import train_syncnet as train
    try:
        cfg = load_config(args.config)
        if args.log_every < 1:
            raise ConfigError("--log-every must be 1 or more.")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = train(cfg, args.out, resume=args.resume, device=args.device, log_every=args.log_every)
    except (ConfigError, ValueError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    if result.is_main:
        log.info("done: step %d, checkpoint %s", result.global_step, result.last_checkpoint)
    return EXIT_OK
