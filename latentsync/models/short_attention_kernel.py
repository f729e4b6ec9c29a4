"""One fused Triton kernel for the motion modules' attention: a huge batch of short sequences (16 frames).

SDPA's fused kernels tile 64+ query rows, so at 16 frames most of their work is padding, and the explicit-score
path (``small_sequence_attention``) writes fp32 copies of q and k and the scores to memory between its kernels.
Here each program reads G heads of one sequence once, keeps scores and softmax in registers (fp32, as the
explicit path) and writes the output once: the memory traffic is q, k, v and the output, nothing else.

Importing this module imports Triton; ``latentsync.models.attention`` imports it only when asked to use it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_FRAMES = 32  # longer sequences belong to SDPA's tiled kernels (the motion modules take at most 24)
_TILE_BUDGET = 8192  # values of one q/k/v tile per program, G * L_PAD * D_PAD (registers at num_warps=4)


@triton.jit
def _short_attention(q_ptr, k_ptr, v_ptr, o_ptr, length, heads, head_dim, scale,
                     sq_n, sq_l, sq_h, sk_n, sk_l, sk_h, sv_n, sv_l, sv_h, so_n, so_l, so_h,
                     G: tl.constexpr, L_PAD: tl.constexpr, D_PAD: tl.constexpr):
    pid = tl.program_id(0)
    groups = heads // G
    n = (pid // groups).to(tl.int64)  # n * stride passes 2**31 on long batches
    h = (pid % groups) * G + tl.arange(0, G)[:, None, None]
    i = tl.arange(0, L_PAD)[None, :, None]
    d = tl.arange(0, D_PAD)[None, None, :]
    valid = (i < length) & (d < head_dim)
    q = tl.load(q_ptr + n * sq_n + i * sq_l + h * sq_h + d, mask=valid, other=0.0)
    k = tl.load(k_ptr + n * sk_n + i * sk_l + h * sk_h + d, mask=valid, other=0.0)
    v = tl.load(v_ptr + n * sv_n + i * sv_l + h * sv_h + d, mask=valid, other=0.0)
    scores = tl.dot(q, tl.permute(k, (0, 2, 1))) * scale  # (G, L, L) in fp32
    j = tl.arange(0, L_PAD)[None, None, :]
    scores = tl.where(j < length, scores, float("-inf"))
    scores = scores - tl.max(scores, axis=2)[:, :, None]
    weights = tl.exp(scores)
    weights = weights / tl.sum(weights, axis=2)[:, :, None]
    out = tl.dot(weights.to(v.dtype), v)  # (G, L, D) in fp32, as the explicit path's product
    tl.store(o_ptr + n * so_n + i * so_l + h * so_h + d, out.to(o_ptr.dtype.element_ty), mask=valid)


def supports(q: torch.Tensor) -> bool:
    """Whether ``short_attention`` takes queries like ``q`` (N, heads, L, d)."""
    return q.dtype == torch.float16 and q.shape[-2] <= MAX_FRAMES


def _pow2_at_least(value: int, floor: int) -> int:
    return max(floor, 1 << (int(value) - 1).bit_length())


def _heads_per_program(heads: int, l_pad: int, d_pad: int) -> int:
    group = 1
    while heads % (group * 2) == 0 and group * 2 * l_pad * d_pad <= _TILE_BUDGET:
        group *= 2
    return group


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_warps: int = 4) -> torch.Tensor:
    """Softmax attention (SDPA's default scale) over (N, heads, L, d) views, L <= MAX_FRAMES, head dim contiguous.

    Returns (N, heads, L, d) as a view of an (N, L, heads, d) tensor, so the caller's ``transpose(1, 2).flatten(2)``
    copies nothing. fp16 only: ``tl.dot`` would run fp32 inputs as TF32, and bf16 is not checked yet (Triton's CPU
    interpreter, which the tests use, multiplies bf16 wrongly). ``num_warps``: per program (the bench compares 2, 4, 8).
    """
    n, heads, length, head_dim = q.shape
    if not supports(q):
        raise ValueError(f"short_attention takes fp16 sequences of <= {MAX_FRAMES}, got {length} in {q.dtype}")
    if not (q.stride(-1) == k.stride(-1) == v.stride(-1) == 1):
        raise ValueError("short_attention needs the head dimension contiguous in q, k and v")
    out = torch.empty((n, length, heads, head_dim), device=q.device, dtype=q.dtype)  # the kernel writes it whole
    l_pad, d_pad = _pow2_at_least(length, 16), _pow2_at_least(head_dim, 16)
    group = _heads_per_program(heads, l_pad, d_pad)
    _short_attention[(n * (heads // group),)](
        q, k, v, out, length, heads, head_dim, head_dim ** -0.5,
        q.stride(0), q.stride(2), q.stride(1), k.stride(0), k.stride(2), k.stride(1),
        v.stride(0), v.stride(2), v.stride(1), out.stride(0), out.stride(1), out.stride(2),
        G=group, L_PAD=l_pad, D_PAD=d_pad, num_warps=num_warps,
    )
    return out.transpose(1, 2)
