"""Deterministic random weights for the metric networks, written in their real checkpoint formats.

SyncNet v2 (13.6 M parameters) and S3FD (22.5 M) have fixed architectures, so their test weights cannot be
made small; instead every tensor is drawn from a counter-based integer hash (SplitMix64 of the seed, the key
and the element index), which gives the same float32 values on every machine and library version. A fixture
stores the recipe and a digest, and tests rebuild the files on the fly. StableSyncNet takes any config, so
small configs make small files.

* :func:`syncnet_v2_state`, :func:`s3fd_state`, :func:`stable_syncnet_state` -> state dicts.
* :func:`write_syncnet_v2`, :func:`write_s3fd`, :func:`write_stable_syncnet` -> files as upstream stores them
  (plain state dicts for ``syncnet_v2.model`` / ``sfd_face.pth``, ``{"state_dict": ...}`` for
  ``stable_syncnet.pt``).
* :func:`state_digest` -> sha256 over keys, dtypes, shapes and bytes (what a fixture pins).
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Mapping

import numpy as np
import torch

from .checkpoints import expected_shapes

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def hashed_uniform(seed: int, name: str, count: int) -> np.ndarray:
    """``count`` float32 values in [-1, 1) on a 2^-23 grid, from SplitMix64 of (seed, name, index)."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1.0)


def _tensor(seed: int, name: str, shape: tuple[int, ...], scale: float, offset: float = 0.0) -> torch.Tensor:
    values = hashed_uniform(seed, name, math.prod(shape)) * np.float32(scale) + np.float32(offset)
    return torch.from_numpy(values.astype(np.float32).reshape(shape))


def init_state(shapes: Mapping[str, tuple[int, ...]], seed: int, *, gain: float = 2.0,
               overrides: Mapping[str, tuple[float, float]] | None = None) -> dict[str, torch.Tensor]:
    """A state dict for ``shapes``: weights uniform with variance ``gain / fan_in``, biases +-0.01, norm scales
    1 +- 0.1, BatchNorm running means +-0.1 and variances 1..1.5. ``overrides``: key -> (scale, offset)."""
    state = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            state[name] = torch.zeros((), dtype=torch.long)
            continue
        if overrides and name in overrides:
            scale, offset = overrides[name]
        elif leaf == "running_var":
            scale, offset = 0.25, 1.25
        elif leaf == "running_mean" or (leaf == "bias" and not _is_layer_weight(name, shapes)):
            scale, offset = 0.1, 0.0
        elif leaf == "bias":
            scale, offset = 0.01, 0.0
        elif len(shape) == 1:  # norm scales
            scale, offset = 0.1, 1.0
        else:
            fan_in = math.prod(shape[1:])
            scale, offset = math.sqrt(3.0 * gain / fan_in), 0.0
        state[name] = _tensor(seed, name, tuple(shape), scale, offset)
    return state


def _is_layer_weight(name: str, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """True when ``name`` is the bias of a conv/linear layer (its weight has more than one dimension)."""
    weight = name[: -len("bias")] + "weight"
    return weight in shapes and len(shapes[weight]) > 1


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over sorted keys with dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def syncnet_v2_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random SyncNet v2 weights (every key of ``syncnet_v2.model``).

    Both towers end in small weights and one shared bias (+-0.6), so lip and audio embeddings lie about as far
    from each other as from the origin: the best offset then depends on the content (the search's zero padding
    neither wins nor loses every time)."""
    from .syncnet_v2 import SyncNetV2

    with torch.device("meta"):
        shapes = expected_shapes(SyncNetV2())
    small = 0.01 * math.sqrt(6.0 / 512)
    overrides = {"netfcaud.3.weight": (small, 0.0), "netfclip.3.weight": (small, 0.0), "netfcaud.3.bias": (0.6, 0.0)}
    state = init_state(shapes, seed, overrides=overrides)
    state["netfclip.3.bias"] = state["netfcaud.3.bias"].clone()
    return state


def s3fd_state(seed: int = 0, face_bias: float = 0.0) -> dict[str, torch.Tensor]:
    """Random S3FD weights; ``face_bias`` is added to every conf head's face logit (how many boxes pass 0.9)."""
    from .s3fd import S3FD

    with torch.device("meta"):
        shapes = expected_shapes(S3FD())
    overrides = {f"L2Norm{n}.weight": (0.1 * s, s) for n, s in (("3_3", 10.0), ("4_3", 8.0), ("5_3", 5.0))}
    overrides["vgg.0.weight"] = (math.sqrt(6.0 / 27) / 64, 0.0)  # pixels are +-128: keep activations near 1
    for i in range(6):  # small box offsets, so decoded boxes stay near their priors
        overrides[f"loc.{i}.weight"] = (0.1 * math.sqrt(6.0 / (9 * shapes[f"loc.{i}.weight"][1])), 0.0)
    state = init_state(shapes, seed, overrides=overrides)
    for i in range(6):
        bias = state[f"conf.{i}.bias"]
        bias[-1] += np.float32(face_bias)
    return state


def stable_syncnet_state(config: Mapping, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random StableSyncNet weights for ``config`` (GELU/SiLU nets: unit gain)."""
    from .stable_syncnet import stable_syncnet_shapes

    return init_state(stable_syncnet_shapes(config), seed, gain=1.0)


def _save(state: Mapping[str, torch.Tensor], path: str | os.PathLike, wrap: bool = False) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save({"state_dict": dict(state)} if wrap else dict(state), path)
    return path


def write_syncnet_v2(path: str | os.PathLike, seed: int = 0) -> str:
    """``syncnet_v2.model`` with random weights (a plain state dict, as the official file)."""
    return _save(syncnet_v2_state(seed), path)


def write_s3fd(path: str | os.PathLike, seed: int = 0, face_bias: float = 0.0) -> str:
    """``sfd_face.pth`` with random weights (a plain state dict, as the official file)."""
    return _save(s3fd_state(seed, face_bias), path)


def write_stable_syncnet(path: str | os.PathLike, config: Mapping, seed: int = 0) -> str:
    """``stable_syncnet.pt`` with random weights for ``config`` (``{"state_dict": ...}``, as upstream saves it)."""
    return _save(stable_syncnet_state(config, seed), path, wrap=True)
