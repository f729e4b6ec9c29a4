"""Encoder-only Whisper (any size) and a strict loader for openai-whisper checkpoints.

LatentSync conditions on the encoder's hidden states, so only the encoder is built and kept; the text decoder
of the file is checked (upstream loads the whole model strictly) and then dropped.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, describe_key_mismatch, read_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhisperDims:
    """openai-whisper ``ModelDimensions`` (the ``"dims"`` entry of a checkpoint); defaults are whisper tiny's."""

    n_mels: int = 80
    n_audio_ctx: int = 1500
    n_audio_state: int = 384
    n_audio_head: int = 6
    n_audio_layer: int = 4
    n_vocab: int = 51865
    n_text_ctx: int = 448
    n_text_state: int = 384
    n_text_head: int = 6
    n_text_layer: int = 4

    @classmethod
    def from_mapping(cls, raw: Any, source: str = "<dims>") -> "WhisperDims":
        """Validate a dims mapping (all ten fields, positive ints, heads dividing widths)."""
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{source}: 'dims' must be a mapping of whisper model dimensions, got {type(raw).__name__}.")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in raw]
        extra = sorted(str(k) for k in raw if k not in names)
        if missing or extra:
            raise CheckpointError(
                f"{source}: whisper 'dims' does not match openai-whisper's ModelDimensions "
                f"(missing {missing}, unexpected {extra})."
            )
        values: dict[str, int] = {}
        for name in names:
            value = raw[name]
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise CheckpointError(f"{source}: whisper dims['{name}'] must be a positive integer, got {value!r}.")
            values[name] = value
        dims = cls(**values)
        for state, head, part in (
            (dims.n_audio_state, dims.n_audio_head, "audio"),
            (dims.n_text_state, dims.n_text_head, "text"),
        ):
            if state % head:
                raise CheckpointError(f"{source}: n_{part}_state {state} is not divisible by n_{part}_head {head}.")
        return dims

    def as_dict(self) -> dict[str, int]:
        """The dims as a plain dict, in checkpoint form."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------------------
# Layers. The default namespace casts weights to the activation's dtype/device at call time and runs
# LayerNorm in float32, which is how openai-whisper runs its fp16 inference; comfy.ops.* can be passed instead.


class _CastLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x)
        return F.linear(x, self.weight.to(x), bias)


class _CastConv1d(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x)
        return self._conv_forward(x, self.weight.to(x), bias)


class _Float32LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(device=x.device, dtype=torch.float32)
        bias = None if self.bias is None else self.bias.to(device=x.device, dtype=torch.float32)
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


CAST_OPS = SimpleNamespace(Linear=_CastLinear, Conv1d=_CastConv1d, LayerNorm=_Float32LayerNorm)


def _sinusoid_table(length: int, channels: int) -> torch.Tensor:
    """Whisper's encoder position table: sin over the first half of the channels, cos over the second."""
    half = channels // 2
    rates = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1)))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), rates)
    return torch.cat((angles.sin(), angles.cos()), dim=1)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with whisper's parameter names (key has no bias), computed with SDPA."""

    def __init__(self, width: int, heads: int, ops: Any, factory: dict[str, Any]) -> None:
        super().__init__()
        self.heads = heads
        self.query = ops.Linear(width, width, **factory)
        self.key = ops.Linear(width, width, bias=False, **factory)
        self.value = ops.Linear(width, width, **factory)
        self.out = ops.Linear(width, width, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return self.out(mixed.transpose(1, 2).reshape(batch, length, width))


class _EncoderBlock(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, ops: Any, factory: dict[str, Any]) -> None:
        super().__init__()
        self.attn = _SelfAttention(width, heads, ops, factory)
        self.attn_ln = ops.LayerNorm(width, **factory)
        self.mlp = nn.Sequential(ops.Linear(width, 4 * width, **factory), nn.GELU(), ops.Linear(4 * width, width, **factory))
        self.mlp_ln = ops.LayerNorm(width, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder; parameter names are the file's ``encoder.*`` keys without the prefix."""

    def __init__(
        self,
        dims: WhisperDims,
        *,
        operations: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        ops = CAST_OPS if operations is None else operations
        factory = {"device": device, "dtype": dtype}
        width = dims.n_audio_state
        self.dims = dims
        self.conv1 = ops.Conv1d(dims.n_mels, width, kernel_size=3, padding=1, **factory)
        self.conv2 = ops.Conv1d(width, width, kernel_size=3, stride=2, padding=1, **factory)
        table = _sinusoid_table(dims.n_audio_ctx, width)
        self.register_buffer("positional_embedding", table.to(device=device, dtype=dtype or table.dtype))
        self.blocks = nn.ModuleList(_EncoderBlock(width, dims.n_audio_head, ops, factory) for _ in range(dims.n_audio_layer))
        self.ln_post = ops.LayerNorm(width, **factory)

    @property
    def mel_frames(self) -> int:
        """Mel frames per encoder window (3000 = 30 s for every released whisper)."""
        return 2 * self.dims.n_audio_ctx

    def _embed(self, mel: torch.Tensor) -> torch.Tensor:
        expected = (self.dims.n_mels, self.mel_frames)
        if mel.ndim != 3 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"Whisper encoder expects a mel batch (B, {expected[0]}, {expected[1]}), got {tuple(mel.shape)}.")
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        return (x + self.positional_embedding.to(x.device)).to(x.dtype)

    def forward_hidden_states(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, n_layer + 1, n_ctx, D)``: the embedded input (after convs + positions) and every block's output.

        This is what LatentSync conditions on; ``ln_post`` is not applied.
        """
        x = self._embed(mel)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return torch.stack(states, dim=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Standard whisper encoder output ``(B, n_ctx, D)`` (after ``ln_post``)."""
        x = self._embed(mel)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


# --------------------------------------------------------------------------------------------------------
# Checkpoint layout and loading.


def _linear_shapes(prefix: str, fan_in: int, fan_out: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.weight": (fan_out, fan_in)}
    if bias:
        shapes[f"{prefix}.bias"] = (fan_out,)
    return shapes


def _block_shapes(prefix: str, width: int, cross: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for attn in ("attn", "cross_attn") if cross else ("attn",):
        for proj in ("query", "key", "value", "out"):
            shapes.update(_linear_shapes(f"{prefix}.{attn}.{proj}", width, width, bias=proj != "key"))
        shapes.update({f"{prefix}.{attn}_ln.weight": (width,), f"{prefix}.{attn}_ln.bias": (width,)})
    shapes.update(_linear_shapes(f"{prefix}.mlp.0", width, 4 * width))
    shapes.update(_linear_shapes(f"{prefix}.mlp.2", 4 * width, width))
    shapes.update({f"{prefix}.mlp_ln.weight": (width,), f"{prefix}.mlp_ln.bias": (width,)})
    return shapes


def whisper_checkpoint_shapes(dims: WhisperDims) -> dict[str, tuple[int, ...]]:
    """Every key (encoder and decoder) of an openai-whisper ``model_state_dict`` with its shape."""
    a, t = dims.n_audio_state, dims.n_text_state
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (a, dims.n_mels, 3),
        "encoder.conv1.bias": (a,),
        "encoder.conv2.weight": (a, a, 3),
        "encoder.conv2.bias": (a,),
        "encoder.positional_embedding": (dims.n_audio_ctx, a),
        "encoder.ln_post.weight": (a,),
        "encoder.ln_post.bias": (a,),
        "decoder.token_embedding.weight": (dims.n_vocab, t),
        "decoder.positional_embedding": (dims.n_text_ctx, t),
        "decoder.ln.weight": (t,),
        "decoder.ln.bias": (t,),
    }
    for i in range(dims.n_audio_layer):
        shapes.update(_block_shapes(f"encoder.blocks.{i}", a, cross=False))
    for i in range(dims.n_text_layer):
        shapes.update(_block_shapes(f"decoder.blocks.{i}", t, cross=True))
    return shapes


def load_whisper_encoder(
    path: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    operations: Any = None,
) -> WhisperEncoder:
    """Load the encoder of an openai-whisper checkpoint (``{"dims", "model_state_dict"}``, any model size).

    The whole file is validated as upstream's strict ``load_state_dict`` would (decoder included); only the
    encoder is built. Weights are converted to ``dtype`` (official files are float16; default float32).
    """
    path = os.fspath(path)
    obj = read_checkpoint(path)
    if "dims" not in obj or "model_state_dict" not in obj:
        raise CheckpointError(
            f"{path} is not an openai-whisper checkpoint: expected top-level keys 'dims' and 'model_state_dict', "
            f"found {sorted(map(str, obj))[:10]}. Use the original tiny.pt (LatentSync's checkpoints/whisper/)."
        )
    dims = WhisperDims.from_mapping(obj["dims"], path)
    state = obj["model_state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'model_state_dict' must be a dict of tensors, got {type(state).__name__}.")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: 'model_state_dict' entries that are not tensors: {not_tensors[:10]}.")

    problems = describe_key_mismatch(whisper_checkpoint_shapes(dims), state)
    if problems:
        raise CheckpointError(
            f"Whisper checkpoint {path} does not match its own dims {dims.as_dict()} "
            f"(openai-whisper loads the whole model strictly):{problems}"
        )
    bad = sorted(k for k, v in state.items() if not v.is_floating_point())
    if bad:
        raise CheckpointError(f"{path}: whisper weights must be floating point; integer tensors: {bad[:10]}.")

    encoder_state = {
        k[len("encoder."):]: v.to(device=device, dtype=dtype, copy=True) for k, v in state.items() if k.startswith("encoder.")
    }
    del obj, state
    with torch.device("meta"):
        encoder = WhisperEncoder(dims, operations=operations, dtype=dtype)
    encoder.load_state_dict(encoder_state, strict=True, assign=True)
    encoder.eval().requires_grad_(False)
    log.info(
        "Loaded whisper encoder from %s: %d layers, width %d, %d mel bands (%s, %s)",
        path, dims.n_audio_layer, dims.n_audio_state, dims.n_mels, device, dtype,
    )
    return encoder
