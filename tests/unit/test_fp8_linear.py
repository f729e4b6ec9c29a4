"""FP8 linears (latentsync.models.fp8), on the CPU's float8 matrix product: the layer computes exactly the
dequantized product, its error against the float layer is that of 3-bit mantissas, row scaling protects small rows
from a large one, and converting a U-Net swaps only the layers meant (its output stays close, DeepCache too)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from latentsync.models.fp8 import FP8, FP8_MAX, Fp8Linear, convert_linears, fp8_unavailable_reason
from latentsync.models.unet import DeepCacheState, UNet3DConditionModel
from latentsync.tiny_models import tiny_unet_config


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def linear(inp: int = 64, out: int = 48, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(inp, out)
    with torch.no_grad():
        layer.bias.normal_()
    return layer


@pytest.mark.parametrize("scaling", ["row", "tensor"])
@torch.no_grad()
def test_layer_is_the_dequantized_product(scaling):
    layer = linear()
    fp8 = Fp8Linear.from_linear(layer, scaling)
    x = torch.randn(3, 5, 64)
    rows = x.reshape(-1, 64)
    amax = rows.abs().amax(1, keepdim=True) if scaling == "row" else rows.abs().amax()
    sx = amax / FP8_MAX
    xq = (rows / sx).to(FP8).float() * sx
    w = layer.weight
    sw = (w.abs().amax(1, keepdim=True) if scaling == "row" else w.abs().amax()) / FP8_MAX
    wq = (w / sw).to(FP8).float() * sw
    expected = (xq @ wq.t()).to(torch.bfloat16 if scaling == "row" else torch.float32).float() + layer.bias
    out = fp8(x)
    assert out.shape == (3, 5, 48) and out.dtype == torch.float32
    assert torch.allclose(out.reshape(-1, 48), expected, rtol=1e-5, atol=1e-5)
    assert rel_l2(out, layer(x)) < 0.05  # e4m3: 3 mantissa bits on both sides of the product
    assert fp8.weight_fp8.dtype == FP8 and not hasattr(fp8, "weight")  # the float weight is not kept


@torch.no_grad()
def test_row_scaling_keeps_small_rows_that_one_large_row_would_flush():
    fp8_row = Fp8Linear.from_linear(linear(), "row")
    fp8_tensor = Fp8Linear.from_linear(linear(), "tensor")
    x = torch.randn(8, 64)
    x[0] *= 1e5  # one outlier token: with one scale the others fall to float8's subnormals or zero
    ref = linear()(x)
    small_row_err = [rel_l2(m(x)[1:] - m.bias, ref[1:] - m.bias) for m in (fp8_row, fp8_tensor)]
    assert small_row_err[0] < 0.05 and small_row_err[1] > 0.15


@torch.no_grad()
def test_zero_rows_stay_zero_and_finite():
    fp8 = Fp8Linear.from_linear(linear(), "row")
    out = fp8(torch.zeros(4, 64))
    assert torch.isfinite(out).all() and torch.allclose(out, fp8.bias.expand(4, -1))


def test_sizes_fp8_gemms_refuse_are_named():
    with pytest.raises(ValueError, match="multiples of 16"):
        Fp8Linear.from_linear(nn.Linear(40, 48))
    with pytest.raises(ValueError, match="scaling='block'"):
        Fp8Linear.from_linear(nn.Linear(64, 48), "block")


@torch.no_grad()
def test_converting_a_unet_swaps_the_transformer_linears_and_stays_close():
    torch.manual_seed(0)
    unet = UNet3DConditionModel(tiny_unet_config(block_out_channels=[32, 64, 64, 64])).eval()
    for p in unet.parameters():
        p.copy_(torch.randn_like(p) * 0.05)
    fp8 = copy.deepcopy(unet)
    swapped = convert_linears(fp8)
    linears = {n for n, m in unet.named_modules() if type(m) is nn.Linear}
    kept = {n for n, m in fp8.named_modules() if type(m) is nn.Linear}
    assert swapped == len(linears) - len(kept) > 0
    assert kept and all(n.startswith("time_embedding.") or m.in_features % 16 or m.out_features % 16
                        for n, m in unet.named_modules() if n in kept)
    sample = torch.randn(2, 13, 16, 16, 16)
    audio = torch.randn(2, 16, 5, unet.config["cross_attention_dim"])
    ref_state, fp8_state = DeepCacheState(), DeepCacheState()
    for t in (999, 500):  # a full step, then a DeepCache step from each model's own cache
        ref, out = unet(sample, t, audio, deepcache=ref_state), fp8(sample, t, audio, deepcache=fp8_state)
        assert 0 < rel_l2(out, ref) < 0.02


def test_fp8_available_on_the_cpu():
    assert fp8_unavailable_reason("cpu") is None
