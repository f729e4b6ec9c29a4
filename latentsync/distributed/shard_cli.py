"""The lip-sync command's ``--devices``: the shard workers started once the model files are known, closed at the end."""

from __future__ import annotations

import argparse
import gc
from typing import Any, Optional

from .shard import ShardPool


def start_shards(args: argparse.Namespace, models: Any, dtype: Any, options: Any) -> Optional[ShardPool]:
    """One worker per device of ``args.devices`` (checked by ``devices.check_devices``), or None without sharding.

    The driver keeps only Whisper (audio features): its U-Net and VAE are dropped before the workers load theirs, so
    the first device holds one set of models, as in a single-device run.
    """
    devices = getattr(args, "devices", None)
    if not devices:
        return None
    import torch

    models.unet = None
    models.vae = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    sampler = options.sampler
    shape = (sampler.chunk_frames, sampler.batch_chunks) if options.compile else None
    return ShardPool(devices, models.files, version=models.version, dtype=dtype, compile_shape=shape)
