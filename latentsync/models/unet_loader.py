"""Strict loading of LatentSync U-Net checkpoints (upstream ``latentsync_unet.pt`` or ``.safetensors``).

The model is built on the ``meta`` device and the file's tensors are assigned into it one by one (cast to
the target dtype/device first), so a 5 GB checkpoint is never held twice and no random init is computed; a mapped
file's pages are let go tensor by tensor as they are converted.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

import torch

from ..configs import unet_config
from .checkpoint import CheckpointError, describe_key_mismatch, extract_state_dict, read_checkpoint
from .layers import temporal_position_table
from .mapped_pages import MappedCheckpoint
from .unet_model import UNet3DConditionModel

logger = logging.getLogger(__name__)

_PE_SUFFIX = ".pos_encoder.pe"
_PE_WARN_TOLERANCE = 1e-4


def _meta_model(config: Mapping[str, Any], operations: Any | None = None) -> UNet3DConditionModel:
    with torch.device("meta"):
        return UNet3DConditionModel(config, operations=operations)


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device == b.device and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def unet_state_dict_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the U-Net built from ``config`` with its shape (built on ``meta``: cheap)."""
    return {k: tuple(v.shape) for k, v in _meta_model(config).state_dict().items()}


def config_name(config: Mapping[str, Any]) -> str:
    """The released config ``config`` equals ("stage2", "stage2_efficient"), else "custom (widths ...)"."""
    for name in ("stage2", "stage2_efficient"):
        if dict(config) == unet_config(name):
            return name
    return f"custom (block_out_channels={list(config.get('block_out_channels', []))})"


def _efficient_hint(report_missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    motion_down = [k for k in report_missing if k.startswith("down_blocks.") and ".motion_modules." in k]
    if motion_down and len(motion_down) == len(report_missing) and not unexpected and not mismatched:
        return (
            "\n  The only missing weights are the down-block motion modules: this file looks like a checkpoint "
            "trained with stage2_efficient.yaml. Load it with config=latentsync.configs.unet_config("
            "'stage2_efficient') (upstream leaves those modules at their identity initialisation)."
        )
    return ""


def load_unet_state_dict(
    model: UNet3DConditionModel,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "<file>",
    config_name: str = "stage2",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    release: Callable[[torch.Tensor], object] | None = None,
) -> UNet3DConditionModel:
    """Load ``state_dict`` into ``model`` strictly (missing ``pos_encoder.pe`` tables are recomputed).

    Tensors are cast to ``dtype``/``device`` (default: the model's) and assigned, so ``model`` may live on
    ``meta``. ``release`` gets each file tensor once a copy of it is made (e.g. to drop its mapped pages).
    Raises :class:`CheckpointError` naming ``source``, ``config_name`` and every bad key.
    """
    expected = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in expected.items()}
    report = describe_key_mismatch(shapes, state_dict, ignore_missing=(_PE_SUFFIX,))
    if report is not None:
        missing = [k for k in shapes if k not in state_dict and not k.endswith(_PE_SUFFIX)]
        unexpected = [k for k in state_dict if k not in shapes]
        mismatched = [k for k in shapes if k in state_dict and tuple(state_dict[k].shape) != shapes[k]]
        raise CheckpointError(
            f"U-Net checkpoint {source} does not match the {config_name!r} U-Net config:{report}"
            + _efficient_hint(missing, unexpected, mismatched)
        )

    ref = next(iter(expected.values()))
    dtype = dtype or (ref.dtype if ref.is_floating_point() else torch.float32)
    device = torch.device(device) if device is not None else (ref.device if ref.device.type != "meta" else "cpu")
    tables: dict[tuple[int, int], torch.Tensor] = {}
    pe_diffs: list[float] = []
    ready: dict[str, torch.Tensor] = {}
    for key, target in expected.items():
        if key.endswith(_PE_SUFFIX):
            table = tables.setdefault(tuple(target.shape[1:]), temporal_position_table(*target.shape[1:]))
            if key not in state_dict:
                ready[key] = table.to(device=device, dtype=dtype)
                continue
            pe_diffs.append((state_dict[key].to("cpu", torch.float32) - table).abs().max().item())
        ready[key] = state_dict[key].to(device=device, dtype=dtype)
        if release is not None and not _same_storage(ready[key], state_dict[key]):
            release(state_dict[key])
    odd = [d for d in pe_diffs if d > _PE_WARN_TOLERANCE]
    if odd:
        logger.warning(
            "%s: %d of %d pos_encoder.pe tables differ from the sinusoid table (max diff %.3g); "
            "using the file's values.",
            source, len(odd), len(pe_diffs), max(odd),
        )
    model.load_state_dict(ready, strict=True, assign=True)
    return model


def load_unet(
    path: str | os.PathLike,
    config: Mapping[str, Any] | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    operations: Any | None = None,
) -> UNet3DConditionModel:
    """Read a U-Net checkpoint and return the model in eval mode on ``device`` in ``dtype``.

    ``config`` defaults to the released stage2 config (LatentSync 1.5 and 1.6). Accepts upstream's
    ``{"state_dict": ..., "global_step": ...}`` pickle (read with weights_only=True) or a safetensors file.
    """
    path = os.fspath(path)
    config = unet_config("stage2") if config is None else config
    name = config_name(config)
    model = _meta_model(config, operations)  # validates the config before any file I/O
    checkpoint = read_checkpoint(path)
    if "global_step" in checkpoint:
        logger.info("%s: global_step %s", path, checkpoint["global_step"])
    state = extract_state_dict(checkpoint, path)
    del checkpoint
    pages = MappedCheckpoint(path)  # the whole file is mapped; its pages go once each tensor is converted
    load_unet_state_dict(model, state, source=path, config_name=name, dtype=dtype, device=device,
                         release=pages.release)
    return model.eval().requires_grad_(False)
