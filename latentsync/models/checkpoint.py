"""Safe reading of checkpoint files (pickled torch or safetensors) into plain dicts of tensors.

Pickles are only ever opened with ``weights_only=True``; every failure becomes a
:class:`CheckpointError` whose message names the file and says what to do.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any, Mapping

import torch

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


class CheckpointError(ValueError):
    """A checkpoint file could not be read or does not fit the model it is loaded into."""


def _size_text(path: str) -> str:
    try:
        return f"{os.path.getsize(path):,} bytes"
    except OSError:
        return "size unknown"


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, Any]:
    """Read a checkpoint file and return its top-level object as a dict.

    safetensors files give ``{name: tensor}``; pickled files give whatever dict was saved
    (e.g. ``{"state_dict": ..., "global_step": ...}`` or whisper's ``{"dims", "model_state_dict"}``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Checkpoint file is empty (0 bytes): {path}. Delete it and download it again.")

    if path.lower().endswith(SAFETENSORS_SUFFIXES):
        return _read_safetensors(path)
    return _read_pickle(path, mmap=mmap)


def _read_safetensors(path: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(path, device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"Could not read safetensors file {path} ({_size_text(path)}): {exc}. "
            "The file is truncated or corrupt; delete it and download it again."
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _read_pickle(path: str, *, mmap: bool) -> dict[str, Any]:
    is_zip = zipfile.is_zipfile(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load {path}: it contains Python objects other than tensors and plain data, "
            "which could run code when unpickled (loaded with weights_only=True). Use the official "
            f"checkpoint or a .safetensors file. Details: {_first_line(exc)}"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # garbage bytes surface as any error of the unpickler (IndexError, KeyError, ...)
        raise CheckpointError(
            f"Could not read checkpoint {path} ({_size_text(path)}): {_first_line(exc)}. "
            "The file is truncated or corrupt (an interrupted download?); delete it and download it again."
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Checkpoint {path} holds a {type(obj).__name__}, not a dict of tensors; it is not a model checkpoint."
        )
    return dict(obj)


def extract_state_dict(obj: Mapping[str, Any], path: str = "<checkpoint>", keys: tuple[str, ...] = ("state_dict",)) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint object (under one of ``keys``, or the object itself).

    A ``module.`` prefix left by DataParallel/DDP on every key is stripped.
    """
    state = obj
    for key in keys:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            state = inner
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"Checkpoint {path} contains no tensors (top-level keys: {sorted(map(str, obj))[:10]})."
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def describe_key_mismatch(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, torch.Tensor],
    *,
    ignore_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
    limit: int = 12,
) -> str | None:
    """Compare expected key shapes with a state dict; return a readable report or None if they agree.

    ``ignore_missing``/``ignore_unexpected`` are key suffixes that may be absent/extra (e.g. recomputable buffers).
    """
    missing = [k for k in expected if k not in found and not k.endswith(ignore_missing)]
    unexpected = [k for k in found if k not in expected and not k.endswith(ignore_unexpected)]
    mismatched = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k])
    ]
    if not (missing or unexpected or mismatched):
        return None

    def block(title: str, items: list[str]) -> str:
        if not items:
            return ""
        shown = "\n    ".join(items[:limit])
        more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
        return f"\n  {title} ({len(items)}):\n    {shown}{more}"

    return (
        block("missing from the file", missing)
        + block("unexpected in the file", unexpected)
        + block("shape mismatch", mismatched)
    )
