"""Tiny random models in the real on-disk formats, written into a ComfyUI models folder for the integration tests.

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
from safetensors.torch import load_file, save_file

RESOLUTION = 64
UNET_NAME = "tiny/unet_tiny.pt"
WHISPER_NAME = "whisper/whisper_tiny_test.pt"
VAE_NAME = "sd-vae-random-test.safetensors"
UPSCALER_NAME = "tiny_compact_x2.pth"


def write_unet(latentsync_dir: Path, fixtures: Path) -> str:
    config = json.loads((fixtures / "unet_tiny_config.json").read_text())
    state = load_file(str(fixtures / "unet_tiny_weights.safetensors"))
    path = latentsync_dir / UNET_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.float() for k, v in state.items()}, "global_step": 0}, path)
    path.with_suffix(".json").write_text(json.dumps({"model": config, "resolution": RESOLUTION}))
    return UNET_NAME


def write_whisper(latentsync_dir: Path, width: int, seed: int = 0) -> str:
    from latentsync.models.whisper import WhisperDims, whisper_checkpoint_shapes

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
    path = latentsync_dir / WHISPER_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": state}, path)
    return WHISPER_NAME


def _vae_shapes() -> dict[str, tuple[int, ...]]:
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

    channels = [128, 256, 512, 512]
    conv("encoder.conv_in", 3, 128)
    cin = 128
    for i, c in enumerate(channels):
        for j in range(2):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < 3:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c)
        cin = c
    mid("encoder", 512)
    norm("encoder.conv_norm_out", 512)
    conv("encoder.conv_out", 512, 8)
    conv("quant_conv", 8, 8, 1)
    conv("post_quant_conv", 4, 4, 1)
    conv("decoder.conv_in", 4, 512)
    mid("decoder", 512)
    rev = list(reversed(channels))
    cin = 512
    for i, c in enumerate(rev):
        for j in range(3):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < 3:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c)
        cin = c
    norm("decoder.conv_norm_out", 128)
    conv("decoder.conv_out", 128, 3)
    return shapes


def write_vae(vae_dir: Path, seed: int = 0) -> str:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _vae_shapes().items():
        is_norm = ("norm" in key.split(".")[-2]) or key.split(".")[-2] == "group_norm"
        if is_norm:
            state[key] = (torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)).half()
        elif key.endswith("bias"):
            state[key] = torch.zeros(shape, dtype=torch.float16)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = (torch.randn(shape, generator=gen) * (0.5 / fan_in ** 0.5)).half()
    vae_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(vae_dir / VAE_NAME))
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
