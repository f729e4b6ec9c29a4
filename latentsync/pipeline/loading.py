"""Loading the U-Net, Whisper and VAE files that make one LatentSync model, with their config and resolution.

A checkpoint may carry a sidecar ``<checkpoint stem>.json`` holding ``{"model": <U-Net config>, "resolution": R}``
(used for other architectures, e.g. the tiny test models); otherwise the released stage2 config applies and the
resolution comes from the version (1.5 -> 256, 1.6 -> 512).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..configs import RESOLUTION_BY_VERSION, unet_config


@dataclass
class UNetSpec:
    """What to build for a U-Net file: its config, face resolution and the name used in messages."""

    config: dict[str, Any]
    resolution: int
    config_name: str


def sidecar_path(checkpoint: str) -> str:
    return os.path.splitext(checkpoint)[0] + ".json"


def guess_version(path: str) -> Optional[str]:
    """'1.5' or '1.6' when the file's folder or name says so (models/latentsync/1.6/latentsync_unet.pt)."""
    parts = os.path.normpath(path).replace("\\", "/").lower().split("/")
    for part in reversed(parts):
        for version in RESOLUTION_BY_VERSION:
            if part == version or part.endswith("-" + version) or part.endswith("_" + version) or f"v{version}" in part:
                return version
    return None


def unet_spec(checkpoint: str, version: Optional[str] = None) -> UNetSpec:
    """Config and resolution for a U-Net checkpoint: sidecar json, else the released config for ``version``."""
    side = sidecar_path(checkpoint)
    if os.path.isfile(side):
        try:
            data = json.loads(open(side, encoding="utf-8").read())
            config = data["model"]
            resolution = int(data["resolution"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{side}: expected JSON with 'model' (U-Net config) and 'resolution'; {exc}") from exc
        if resolution % 64 or resolution <= 0:
            raise ValueError(f"{side}: resolution must be a positive multiple of 64, got {resolution}")
        return UNetSpec(config=config, resolution=resolution, config_name=os.path.basename(side))
    version = version or guess_version(checkpoint)
    if version not in RESOLUTION_BY_VERSION:
        raise ValueError(
            f"Cannot tell whether {checkpoint} is LatentSync 1.5 or 1.6: choose the version "
            f"({', '.join(RESOLUTION_BY_VERSION)}) or keep the file in a folder named after it."
        )
    name = "stage2.yaml" if version == "1.5" else "stage2_512.yaml"
    return UNetSpec(config=unet_config("stage2"), resolution=RESOLUTION_BY_VERSION[version], config_name=name)


@dataclass
class LipsyncModels:
    """The loaded networks of one LatentSync model (the VAE may be supplied separately)."""

    unet: torch.nn.Module
    whisper: torch.nn.Module
    resolution: int
    vae: Any = None
    files: dict[str, str] = field(default_factory=dict)
    version: Optional[str] = None


def whisper_fit_problem(whisper_width: int, unet_config: dict[str, Any], whisper_path: str, unet_path: str) -> Optional[str]:
    """Why the Whisper encoder's width does not fit the U-Net's audio layers, or None (checked when loading, before
    any audio is decoded)."""
    if not unet_config.get("add_audio_layer", True):
        return None
    expected = int(unet_config.get("cross_attention_dim", whisper_width))
    if int(whisper_width) == expected:
        return None
    return (f"the Whisper file {whisper_path} gives {whisper_width}-wide audio features but the U-Net {unet_path} "
            f"expects {expected} (its cross_attention_dim). Use LatentSync's own whisper/tiny.pt (width 384) or a "
            "U-Net trained with this Whisper.")


def pick_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """fp16 on CUDA GPUs with compute capability >= 8 (as upstream), bf16/fp32 on request, fp32 elsewhere."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if requested != "auto":
        if requested not in table:
            raise ValueError(f"dtype must be one of auto, {', '.join(table)}; got {requested!r}")
        return table[requested]
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.float16
    return torch.float32


def load_models(
    unet_path: str,
    whisper_path: str,
    *,
    version: Optional[str] = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vae_path: Optional[str] = None,
) -> LipsyncModels:
    """Load U-Net (strict), Whisper encoder and optionally the VAE (diffusers) onto ``device`` in ``dtype``."""
    from ..models.unet import load_unet
    from ..models.whisper import load_whisper_encoder

    device = torch.device(device)
    spec = unet_spec(unet_path, version)
    whisper = load_whisper_encoder(whisper_path)
    problem = whisper_fit_problem(whisper.dims.n_audio_state, spec.config, whisper_path, unet_path)
    if problem:
        raise ValueError(problem)
    whisper = whisper.to(device).eval()
    unet = load_unet(unet_path, spec.config, device=device, dtype=dtype).eval()
    vae = None
    if vae_path is not None:
        from .vae import load_diffusers_vae

        vae = load_diffusers_vae(vae_path, device=device, dtype=dtype)
    files = {"unet": unet_path, "whisper": whisper_path}
    if vae_path:
        files["vae"] = vae_path
    return LipsyncModels(unet=unet, whisper=whisper, resolution=spec.resolution, vae=vae, files=files,
                         version=version or guess_version(unet_path))
