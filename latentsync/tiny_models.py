"""Tiny random models in the real on-disk formats, for ``latentsync selftest`` and the tests.

* U-Net: upstream's stage2 structure with 32-64 channels, saved as upstream's ``{"state_dict", "global_step"}``
  .pt beside a ``<name>.json`` sidecar ``{"model": config, "resolution": R}`` (the loader reads both).
* Whisper: an openai-whisper ``{"dims", "model_state_dict"}`` .pt with one layer per stack (every encoder and
  decoder key present, as the strict loader demands).
* VAE: a small diffusers ``AutoencoderKL`` folder (``config.json`` + safetensors), or a full-size random
  sd-vae-ft-mse in diffusers key format as one .safetensors file (what a real install has, ~160 MB at fp16).

Nothing is built at import; every writer takes a seed and leaves the global random state alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .configs import unet_config

RESOLUTION = 64  # face size of the tiny U-Net (8x8 latents)
UNET_NAME = "tiny/unet_tiny.pt"
WHISPER_NAME = "whisper/whisper_tiny_test.pt"
VAE_FOLDER_NAME = "tiny_vae"
SD_VAE_NAME = "sd-vae-random-test.safetensors"

# sd-vae-ft-mse's AutoencoderKL layout (diffusers), also what the single-file loader builds.
SD_VAE_CHANNELS = (128, 256, 512, 512)


def tiny_unet_config(variant: str = "stage2", **overrides: Any) -> dict[str, Any]:
    """A released U-Net config (upstream's stage2 unless ``variant``) with 32/32/32/64 channels and two heads (the
    parity fixtures' shape); ``overrides`` replace top-level keys (e.g. ``cross_attention_dim=32``)."""
    config = unet_config(variant)
    config.update(attention_head_dim=2, block_out_channels=[32, 32, 32, 64])
    config["motion_module_kwargs"]["num_attention_heads"] = 2
    config.update(overrides)
    return config


def tiny_vae_config(sample_size: int = 256) -> dict[str, Any]:
    """A small diffusers AutoencoderKL's arguments: sd-vae-ft-mse's 4 blocks at 32 channels, one layer each
    (``sample_size`` only sets diffusers' tiling size; the weights do not depend on it)."""
    return {"block_out_channels": [32, 32, 32, 32], "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "latent_channels": 4,
            "norm_num_groups": 32, "sample_size": sample_size}


def save_unet(path: Path, state: Mapping[str, torch.Tensor], config: Mapping[str, Any], resolution: int = RESOLUTION) -> Path:
    """Write ``state`` as upstream's U-Net .pt and its sidecar json (config and face resolution)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.float() for k, v in state.items()}, "global_step": 0}, path)
    path.with_suffix(".json").write_text(json.dumps({"model": dict(config), "resolution": resolution}))
    return path


def write_unet(folder: Path, config: Optional[Mapping[str, Any]] = None, seed: int = 0) -> Path:
    """A randomly initialised U-Net (``tiny_unet_config()`` unless given) at ``folder / UNET_NAME``."""
    from .models.unet import UNet3DConditionModel

    config = dict(config or tiny_unet_config())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = UNet3DConditionModel(config).state_dict()
    return save_unet(folder / UNET_NAME, state, config)


def write_whisper(folder: Path, width: int, seed: int = 0) -> Path:
    """A one-layer openai-whisper checkpoint whose encoder width is ``width`` (the U-Net's cross-attention width)."""
    from .models.whisper import WhisperDims, whisper_checkpoint_shapes

    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": width, "n_audio_head": 2, "n_audio_layer": 1,
            "n_vocab": 64, "n_text_ctx": 8, "n_text_state": 32, "n_text_head": 2, "n_text_layer": 1}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in whisper_checkpoint_shapes(WhisperDims.from_mapping(dims)).items():
        if key.endswith(("ln.weight", "ln_post.weight", "_ln.weight", "ln.bias", "_ln.bias", "ln_post.bias")):
            state[key] = torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1)
            state[key] = (torch.randn(shape, generator=gen) / fan_in ** 0.5).half()
    path = folder / WHISPER_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": state}, path)
    return path


def write_vae_folder(folder: Path, seed: int = 0) -> Path:
    """A small diffusers AutoencoderKL (32 channels, one layer per block) saved as a diffusers folder."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**tiny_vae_config())
    path = folder / VAE_FOLDER_NAME
    vae.save_pretrained(str(path))
    return path


def sd_vae_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of a diffusers AutoencoderKL with sd-vae-ft-mse's config (block_out 128/256/512/512)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int = 3) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c,)
        shapes[f"{name}.bias"] = (c,)

    def resnet(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout)
        if cin != cout:
            conv(f"{name}.conv_shortcut", cin, cout, 1)

    def mid(prefix: str, c: int) -> None:
        resnet(f"{prefix}.mid_block.resnets.0", c, c)
        resnet(f"{prefix}.mid_block.resnets.1", c, c)
        norm(f"{prefix}.mid_block.attentions.0.group_norm", c)
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            shapes[f"{prefix}.mid_block.attentions.0.{proj}.weight"] = (c, c)
            shapes[f"{prefix}.mid_block.attentions.0.{proj}.bias"] = (c,)

    channels = list(SD_VAE_CHANNELS)
    conv("encoder.conv_in", 3, channels[0])
    cin = channels[0]
    for i, c in enumerate(channels):
        for j in range(2):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(channels) - 1:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c)
        cin = c
    mid("encoder", channels[-1])
    norm("encoder.conv_norm_out", channels[-1])
    conv("encoder.conv_out", channels[-1], 8)
    conv("quant_conv", 8, 8, 1)
    conv("post_quant_conv", 4, 4, 1)
    conv("decoder.conv_in", 4, channels[-1])
    mid("decoder", channels[-1])
    cin = channels[-1]
    for i, c in enumerate(reversed(channels)):
        for j in range(3):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(channels) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c)
        cin = c
    norm("decoder.conv_norm_out", channels[0])
    conv("decoder.conv_out", channels[0], 3)
    return shapes


def write_sd_vae_file(folder: Path, seed: int = 0, name: str = SD_VAE_NAME) -> Path:
    """A full-size random sd-vae-ft-mse in diffusers key format, float16, as one .safetensors file (~160 MB)."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sd_vae_shapes().items():
        layer = key.split(".")[-2]
        if "norm" in layer or layer == "group_norm":
            state[key] = (torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)).half()
        elif key.endswith("bias"):
            state[key] = torch.zeros(shape, dtype=torch.float16)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = (torch.randn(shape, generator=gen) * (0.5 / fan_in ** 0.5)).half()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    save_file(state, str(path))
    return path


@dataclass(frozen=True)
class TinyModels:
    """Paths of one tiny model set, ready for ``load_models``."""

    unet: Path
    whisper: Path
    vae: Path
    resolution: int = RESOLUTION


def write_tiny_models(root: Path, seed: int = 0) -> TinyModels:
    """U-Net, Whisper and a small VAE folder under ``root`` (a ComfyUI-style models folder)."""
    config = tiny_unet_config()
    latentsync = root / "latentsync"
    unet = write_unet(latentsync, config, seed=seed)
    whisper = write_whisper(latentsync, int(config["cross_attention_dim"]), seed=seed)
    vae = write_vae_folder(root / "vae", seed=seed)
    return TinyModels(unet=unet, whisper=whisper, vae=vae)
