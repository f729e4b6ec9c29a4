"""Strict loading of the metric networks' checkpoints (weights_only pickles or safetensors)."""

from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

from ..models.checkpoint import CheckpointError, describe_key_mismatch, extract_state_dict, read_checkpoint

BN_COUNTERS = ("num_batches_tracked",)  # BatchNorm bookkeeping: not used in eval, absent from old files


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``model`` with its shape (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str) -> None:
    """Raise CheckpointError naming ``source`` unless ``state`` has exactly the model's keys and shapes
    (BatchNorm's ``num_batches_tracked`` may be present or not)."""
    problem = describe_key_mismatch(expected_shapes(model), state, ignore_missing=BN_COUNTERS,
                                    ignore_unexpected=BN_COUNTERS)
    if problem:
        raise CheckpointError(f"{source} is not a {what} checkpoint:{problem}\nUse the official file or rebuild it "
                              f"from the matching model definition.")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensors hold NaN/inf values (e.g. {bad[:3]}); the file is corrupt.")


def load_strict(model: nn.Module, path: str | os.PathLike, what: str, *, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> nn.Module:
    """Fill ``model`` from ``path`` (strict keys and shapes) and return it in eval mode on ``device``/``dtype``."""
    path = os.fspath(path)
    state = extract_state_dict(read_checkpoint(path), path)
    check_state(model, state, path, what)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}
    for key in own.keys() - state.keys():  # only BatchNorm counters can be absent (checked above)
        state[key] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(state, strict=False, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
