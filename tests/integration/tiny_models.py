"""Tiny random models in the real on-disk formats, written into a ComfyUI models folder for the integration tests.

The writers live in the library (``latentsync.tiny_models``, also behind ``latentsync selftest``); here they get
the parity fixture's tiny U-Net weights, and a ComfyUI upscaler is added:

* U-Net: the parity fixture's tiny U-Net (upstream's stage2 structure, 32-64 channels) saved as upstream's
  ``{"state_dict", "global_step"}`` .pt, with a ``<name>.json`` sidecar ``{"model": config, "resolution": R}``.
* Whisper: an openai-whisper ``{"dims", "model_state_dict"}`` .pt with the U-Net's cross-attention width and one
  encoder layer (every encoder and decoder key present, as the strict loader demands).
* VAE: a full-size sd-vae-ft-mse in diffusers key format (ComfyUI's VAE config is fixed at SD size), random,
  float16 (~160 MB), so core VAELoader and the pack's loader read it exactly as the real file.
* Upscaler: a 2x Real-ESRGAN "compact" (SRVGG) with 8 features, which core UpscaleModelLoader recognises.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from latentsync import tiny_models as lib

RESOLUTION = lib.RESOLUTION
UNET_NAME = lib.UNET_NAME
WHISPER_NAME = lib.WHISPER_NAME
VAE_NAME = lib.SD_VAE_NAME
UPSCALER_NAME = "tiny_compact_x2.pth"


def write_unet(latentsync_dir: Path, fixtures: Path) -> str:
    config = json.loads((fixtures / "unet_tiny_config.json").read_text())
    state = load_file(str(fixtures / "unet_tiny_weights.safetensors"))
    lib.save_unet(latentsync_dir / UNET_NAME, state, config, RESOLUTION)
    return UNET_NAME


def write_whisper(latentsync_dir: Path, width: int, seed: int = 0) -> str:
    lib.write_whisper(latentsync_dir, width, seed)
    return WHISPER_NAME


def write_vae(vae_dir: Path, seed: int = 0) -> str:
    lib.write_sd_vae_file(vae_dir, seed)
    return VAE_NAME


def write_upscaler(upscale_dir: Path, seed: int = 0) -> str:
    gen = torch.Generator().manual_seed(seed)
    feats, scale = 8, 2
    layers = [(3, feats), None, (feats, feats), None, (feats, feats), None, (feats, 3 * scale * scale)]
    state = {}
    for i, layer in enumerate(layers):
        if layer is None:  # PReLU
            state[f"body.{i}.weight"] = torch.full((feats,), 0.25)
            continue
        cin, cout = layer
        state[f"body.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.1
        state[f"body.{i}.bias"] = torch.zeros(cout)
    upscale_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, upscale_dir / UPSCALER_NAME)
    return UPSCALER_NAME


def write_all(models_dir: Path, fixtures: Path) -> dict[str, str]:
    """Every tiny model into ``models_dir`` (ComfyUI's models folder); returns the dropdown names."""
    config = json.loads((fixtures / "unet_tiny_config.json").read_text())
    latentsync = models_dir / "latentsync"
    return {
        "unet": write_unet(latentsync, fixtures),
        "whisper": write_whisper(latentsync, int(config["cross_attention_dim"])),
        "vae": write_vae(models_dir / "vae"),
        "upscaler": write_upscaler(models_dir / "upscale_models"),
    }
