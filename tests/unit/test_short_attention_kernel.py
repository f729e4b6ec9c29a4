"""The motion modules' fused attention kernel (``latentsync.models.short_attention_kernel``).

The kernel itself runs in Triton's CPU interpreter (``TRITON_INTERPRET=1``, set in a child process because Triton
reads it when the kernel is defined): its output must match float64 softmax attention as closely as the explicit
path it replaces, for the U-Net's head dims (40/80/160), short and odd frame counts, and strided q/k/v views. The
switch (``use_fused_short_attention``) must reach exactly the motion modules and leave CPU inputs on their path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentsync.models.attention import Attention
from latentsync.models.motion import TemporalAttention, use_fused_short_attention
from latentsync.models.unet import UNet3DConditionModel
from latentsync.tiny_models import tiny_unet_config

REPO = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")

# (N, heads, L, head dim, layout): "split" = three projections' outputs, "packed" = one (N, L, 3*heads*d) tensor's
# chunks, so q, k and v have strides that differ from a contiguous (N, L, heads*d)
CASES = [
    (5, 8, 16, 40, "split"), (3, 8, 16, 80, "split"), (2, 8, 16, 160, "split"),
    (4, 8, 16, 40, "packed"), (3, 4, 12, 40, "split"), (2, 8, 24, 40, "split"), (3, 2, 1, 16, "split"),
]

INTERPRETED = r"""
import json, sys
import torch
import torch.nn.functional as F
from latentsync.models.attention import small_sequence_attention
from latentsync.models.short_attention_kernel import short_attention

rows = []
for n, heads, length, dim, layout in json.loads(sys.argv[1]):
    g = torch.Generator().manual_seed(n * 1000 + dim)
    if layout == "packed":
        q, k, v = torch.randn(n, length, 3 * heads * dim, generator=g).half().chunk(3, dim=-1)
    else:
        q, k, v = (torch.randn(n, length, heads * dim, generator=g).half() for _ in range(3))
    q, k, v = (t.unflatten(-1, (heads, dim)).transpose(1, 2) for t in (q, k, v))
    out = short_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    explicit = small_sequence_attention(q, k, v).double()
    rows.append({
        "shape": list(out.shape), "merged_is_view": out.transpose(1, 2).flatten(2).data_ptr() == out.data_ptr()
        and out.transpose(1, 2).is_contiguous(),
        "rel_l2": ((out.double() - ref).norm() / ref.norm()).item(),
        "explicit_rel_l2": ((explicit - ref).norm() / ref.norm()).item(),
        "max_abs_vs_explicit": (out.double() - explicit).abs().max().item(),
    })
print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def interpreted() -> list[dict]:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("needs Triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", INTERPRETED, json.dumps(CASES)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
@pytest.mark.parametrize("index", range(len(CASES)))
def test_kernel_matches_softmax_attention_as_closely_as_the_explicit_path(interpreted, index):
    n, heads, length, dim, _ = CASES[index]
    row = interpreted[index]
    assert row["shape"] == [n, heads, length, dim]
    assert row["merged_is_view"]  # the caller's transpose(1, 2).flatten(2) copies nothing
    # fp16 inputs and output: both paths round the output to fp16 (about 3e-4 here); the kernel may not be worse
    assert row["rel_l2"] <= 1.05 * row["explicit_rel_l2"] + 1e-5, row
    assert row["max_abs_vs_explicit"] <= 2e-3, row  # a few fp16 units of the output (|out| ~ 1)


@needs_triton
@pytest.mark.parametrize("dtype,length", [(torch.float32, 16), (torch.bfloat16, 16), (torch.float16, 33)])
def test_kernel_refuses_what_it_does_not_take(dtype, length):
    from latentsync.models import short_attention_kernel as kernel

    q = torch.zeros(2, 8, length, 40, dtype=dtype)
    assert not kernel.supports(q)
    with pytest.raises(ValueError, match="fp16 sequences"):
        kernel.short_attention(q, q, q)


@needs_triton
def test_switch_reaches_the_motion_modules_only_and_cpu_inputs_keep_their_path():
    torch.manual_seed(0)
    unet = UNet3DConditionModel(tiny_unet_config()).eval()
    sample = torch.randn(2, unet.conv_in.in_channels, 4, 8, 8)
    audio = torch.randn(2, 4, 5, unet.config["cross_attention_dim"])
    with torch.no_grad():
        before = unet(sample, 500, audio)
        temporal = [m for m in unet.modules() if isinstance(m, TemporalAttention)]
        assert temporal and use_fused_short_attention(unet) == len(temporal)
        assert all(m.fused_kernel is not None for m in temporal)
        others = [m for m in unet.modules() if isinstance(m, Attention) and not isinstance(m, TemporalAttention)]
        assert others and all(m.fused_kernel is None for m in others)  # spatial and audio attention keep SDPA
        assert torch.equal(unet(sample, 500, audio), before)  # CPU tensors never reach the CUDA kernel
        assert use_fused_short_attention(unet, on=False) == len(temporal)
        assert all(m.fused_kernel is None for m in temporal)
