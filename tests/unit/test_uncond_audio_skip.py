"""CFG's unconditional half: its audio is all zero, so its cross-attention (k = v = 0) is exactly the output bias.
The U-Net given audio for the conditional half only adds that bias instead of computing the attention; the
result must be bit for bit the one with explicit zero audio (full and DeepCache steps), and the sampler must give
the same latents either way."""

from __future__ import annotations

import pytest
import torch

from latentsync.models.unet import DeepCacheState, UNet3DConditionModel
from latentsync.tiny_models import tiny_unet_config


@pytest.fixture(scope="module")
def unet() -> UNet3DConditionModel:
    torch.manual_seed(0)
    model = UNet3DConditionModel(tiny_unet_config()).eval()
    with torch.no_grad():  # every weight and bias random and non-zero (a fresh model zeroes some output layers)
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return model


def inputs(unet: UNet3DConditionModel, chunks: int, frames: int = 4, size: int = 8):
    g = torch.Generator().manual_seed(chunks)
    sample = torch.randn(2 * chunks, unet.conv_in.in_channels, frames, size, size, generator=g)
    audio = torch.randn(chunks, frames, 5, unet.config["cross_attention_dim"], generator=g)
    return sample, audio


@pytest.mark.parametrize("chunks", [1, 2])
@torch.no_grad()
def test_conditional_audio_only_equals_zero_audio_bit_for_bit(unet, chunks):
    sample, audio = inputs(unet, chunks)
    zeros_first = torch.cat([torch.zeros_like(audio), audio])
    biases = [m.attn2.to_out[0].bias for m in unet.modules() if getattr(m, "attn2", None) is not None]
    assert biases and all(b.abs().sum() > 0 for b in biases)  # the bias really is added (not a zero either way)
    for t in (999, 1):
        assert torch.equal(unet(sample, t, audio), unet(sample, t, zeros_first))
    full, skip = DeepCacheState(), DeepCacheState()  # a full step fills the cache, the next reuses it
    for t in (999, 949):
        a, b = unet(sample, t, zeros_first, deepcache=full), unet(sample, t, audio, deepcache=skip)
        assert torch.equal(a, b)
    assert torch.equal(full.cached, skip.cached)


@torch.no_grad()
def test_the_skip_is_not_a_no_op(unet):
    """Audio for the last samples only is not the same as those samples' audio everywhere."""
    sample, audio = inputs(unet, 1)
    assert not torch.equal(unet(sample, 999, audio), unet(sample, 999, torch.cat([audio, audio])))


def test_audio_shapes_are_checked(unet):
    sample, audio = inputs(unet, 1)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        unet(sample, 999, torch.cat([audio, audio, audio]))  # more audio than samples
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        unet(sample, 999, audio[:, :3])  # other frame count
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        unet(sample, 999, audio.flatten(0, 1)[:3])  # flat, not whole samples


class PatchedLinear(torch.nn.Linear):
    """Like ComfyUI's cast/patch-at-forward layers: the weights used are not the stored parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight * 1.5, None if self.bias is None else self.bias + 0.25)


@torch.no_grad()
def test_the_bias_comes_through_the_layer_as_forward_sees_it():
    from types import SimpleNamespace

    from torch import nn

    ops = SimpleNamespace(Linear=PatchedLinear, Conv2d=nn.Conv2d, GroupNorm=nn.GroupNorm, LayerNorm=nn.LayerNorm)
    torch.manual_seed(1)
    model = UNet3DConditionModel(tiny_unet_config(), operations=ops).eval()
    for p in model.parameters():
        p.copy_(torch.randn_like(p) * 0.05)
    sample, audio = inputs(model, 1)
    assert torch.equal(model(sample, 999, audio), model(sample, 999, torch.cat([torch.zeros_like(audio), audio])))
