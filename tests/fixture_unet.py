"""The fixture set's tiny U-Net (upstream's config and random weights), float32 on the CPU, for unit tests."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from latentsync.models.unet import UNet3DConditionModel, load_unet_state_dict


def fixture_unet(fixtures_dir: Path) -> UNet3DConditionModel:
    """``unet_tiny_config.json`` with ``unet_tiny_weights.safetensors`` loaded, in eval mode without gradients."""
    model = UNet3DConditionModel(json.loads((fixtures_dir / "unet_tiny_config.json").read_text()))
    state = {k: v.float() for k, v in load_file(str(fixtures_dir / "unet_tiny_weights.safetensors")).items()}
    load_unet_state_dict(model, state, source="unet_tiny_weights.safetensors")
    return model.eval().requires_grad_(False)
