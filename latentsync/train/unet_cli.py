"""``latentsync train unet --config stage2.yaml [--out DIR] [--resume]``: the U-Net half of the train command."""

from __future__ import annotations

import argparse
import logging
import sys

from ..exit_codes import EXIT_ERROR, EXIT_OK, EXIT_USAGE

log = logging.getLogger("latentsync.train")


def run_unet(args: argparse.Namespace) -> int:
    """Check the config, train the U-Net; errors become one line and an exit code."""
    from .syncnet_config import ConfigError
    from .unet_config import load_config

    try:
        cfg = load_config(args.config)
        if args.log_every < 1:
            raise ConfigError("--log-every must be 1 or more.")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from .unet_loop import train_unet

    try:
        result = train_unet(cfg, args.out, resume=args.resume, device=args.device, log_every=args.log_every)
    except (ConfigError, ValueError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    if result.is_main:
        log.info("done: step %d, checkpoint %s", result.global_step, result.last_checkpoint)
    return EXIT_OK
