"""FP8 linear layers for the U-Net's transformers (an opt-in for GPUs with FP8 tensor cores: Ada, Hopper and later).

Each ``nn.Linear`` whose sizes suit FP8 GEMMs (multiples of 16) keeps its weight in float8 e4m3 with one scale per
output row, and quantizes its input per token row on the fly; ``torch._scaled_mm`` multiplies them and applies both
scales. Convolutions, norms and attention stay in the model's dtype. The result is not upstream's: each product
loses about 3 bits of mantissa, so the U-Net's output moves by a few percent (see docs/performance.md for what a
full run measured). Under ``torch.compile`` the per-row quantization fuses into the layer before.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
SCALINGS = ("row", "tensor")  # one scale per token and per output row; or one per tensor (fp16 output)
_TINY = 1e-12  # an all-zero row keeps a finite scale (its codes are zeros)


def _quantize(x: torch.Tensor, dim: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as float8 codes and the float32 scale that multiplies them back (per row along ``dim``, or one)."""
    xf = x.float()
    amax = xf.abs().amax() if dim is None else xf.abs().amax(dim=dim, keepdim=True)
    scale = amax.clamp(min=_TINY) / FP8_MAX
    return (xf / scale).to(FP8), scale


class Fp8Linear(nn.Module):
    """``nn.Linear``'s forward over a float8 copy of its weight. Built from a loaded layer by :meth:`from_linear`;
    the float weight is not kept, so converting halves the layer's memory."""

    def __init__(self, in_features: int, out_features: int, *, bias: torch.Tensor | None, out_dtype: torch.dtype,
                 scaling: str = "row", device: torch.device | str | None = None) -> None:
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"scaling={scaling!r}; use one of {', '.join(SCALINGS)}")
        if in_features % 16 or out_features % 16:
            raise ValueError(f"FP8 GEMMs need sizes in multiples of 16; got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.scaling = scaling
        self.out_dtype = out_dtype
        self.register_buffer("weight_fp8", torch.empty(out_features, in_features, dtype=FP8, device=device))
        shape = (1, out_features) if scaling == "row" else ()
        self.register_buffer("weight_scale", torch.ones(shape, dtype=torch.float32, device=device))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, scaling: str = "row") -> "Fp8Linear":
        """The FP8 layer of a loaded ``nn.Linear`` (its weight quantized per output row, or as one tensor)."""
        weight = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias, out_dtype=weight.dtype,
                    scaling=scaling, device=weight.device)
        codes, scale = _quantize(weight, 1 if scaling == "row" else None)
        layer.weight_fp8.copy_(codes)
        layer.weight_scale.copy_(scale.reshape(layer.weight_scale.shape))
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        codes, scale = _quantize(rows, 1 if self.scaling == "row" else None)
        # the row-wise kernels write bfloat16 only; one tensor's scale writes the model's dtype directly
        mm_dtype = torch.bfloat16 if self.scaling == "row" else self.out_dtype
        out = torch._scaled_mm(codes, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale,
                               out_dtype=mm_dtype).to(self.out_dtype)
        if self.bias is not None:
            out = out + self.bias.to(self.out_dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, scaling={self.scaling}, bias={self.bias is not None}"


def fp8_unavailable_reason(device: torch.device | str) -> str | None:
    """None when FP8 GEMMs run on ``device``; else a sentence saying why not (CPUs run them, slowly, for tests)."""
    device = torch.device(device)
    if not hasattr(torch, "_scaled_mm"):
        return "this PyTorch has no FP8 matrix product (torch._scaled_mm); PyTorch >= 2.4 has it"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            name = torch.cuda.get_device_name(device)
            return (f"{name} (compute capability {major}.{minor}) has no FP8 tensor cores; they start with Ada "
                    "(RTX 40xx, L4, L40) and Hopper (H100)")
    elif device.type != "cpu":
        return f"FP8 layers are not supported on {device.type}"
    return None


def convert_linears(model: nn.Module, *, scaling: str = "row", skip: Iterable[str] = ("time_embedding",)) -> int:
    """Swap every suitable ``nn.Linear`` in ``model`` for an :class:`Fp8Linear`, in place; returns how many.

    Layers under a child whose name starts with one of ``skip`` stay as they are (the timestep embedding: a few
    rows per step, nothing to gain and its error reaches every block), as do layers with sizes FP8 GEMMs refuse."""
    skip = tuple(skip)
    swaps = []
    for name, module in model.named_modules():
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        for child_name, child in module.named_children():
            if type(child) is nn.Linear and not (child.in_features % 16 or child.out_features % 16):
                swaps.append((module, child_name, child))
    for parent, child_name, child in swaps:
        setattr(parent, child_name, Fp8Linear.from_linear(child, scaling))
    return len(swaps)
