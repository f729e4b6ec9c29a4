"""The LatentSync 3-D U-Net (audio cross-attention + motion modules) built from the ``model:`` config section.

Inputs are video latents ``(B, 13, F, h, w)``; inside, frames are folded into the batch as ``(B*F, C, h, w)``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (
    as_video,
    fold_frames,
    frame_joint_norm,
    memory_format_of,
    resolve_operations,
    timestep_sinusoid,
    unfold_frames,
)
from .unet_blocks import DownLevel, MidLevel, UpLevel

logger = logging.getLogger(__name__)

_DOWN_TYPES = {"CrossAttnDownBlock3D": True, "DownBlock3D": False}  # value: has spatial transformers
_UP_TYPES = {"CrossAttnUpBlock3D": True, "UpBlock3D": False}

# config key -> the only value this implementation (and the released checkpoints) use
_FIXED_SETTINGS = {
    "act_fn": "silu",
    "resnet_time_scale_shift": "default",
    "mid_block_type": "UNetMidBlock3DCrossAttn",
    "use_linear_projection": False,
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "class_embed_type": None,
    "num_class_embeds": None,
    "use_inflated_groupnorm": False,
}


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on the sinusoidal timestep features."""

    def __init__(self, dim: int, out_dim: int, ops: Any) -> None:
        super().__init__()
        self.linear_1 = ops.Linear(dim, out_dim)
        self.linear_2 = ops.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


@dataclass
class DeepCacheState:
    """DeepCache memory for one chunk: the output of the last up block's second-to-last layer.

    ``cached is None``: the next forward is a full step and fills it. Otherwise the next forward reuses it and
    only runs conv_in -> the last up-block layer -> conv_out. Clear it (``clear()``) when the chunk changes.
    """

    cached: torch.Tensor | None = None

    def clear(self) -> None:
        self.cached = None


def _check_config(config: Mapping[str, Any]) -> None:
    """Raise a ValueError naming every setting of ``config`` this U-Net cannot build."""
    required = ("block_out_channels", "down_block_types", "up_block_types", "in_channels", "out_channels",
                "cross_attention_dim")
    absent = [key for key in required if key not in config]
    if absent:
        raise ValueError(f"U-Net config lacks {', '.join(absent)} (expected upstream's stage2.yaml model section).")
    problems = []
    for key, value in _FIXED_SETTINGS.items():
        if config.get(key, value) != value:
            problems.append(f"{key}={config[key]!r} (supported: {value!r})")
    n = len(config["block_out_channels"])
    for key, table in (("down_block_types", _DOWN_TYPES), ("up_block_types", _UP_TYPES)):
        types = list(config[key])
        if len(types) != n:
            problems.append(f"{key} has {len(types)} entries but block_out_channels has {n}")
        problems += [f"{key} entry {t!r} (supported: {sorted(table)})" for t in types if t not in table]
    heads = config.get("attention_head_dim", 8)
    if not isinstance(heads, int) and len(heads) != n:
        problems.append(f"attention_head_dim has {len(heads)} entries but block_out_channels has {n}")
    if int(config.get("downsample_padding", 1)) < 1:
        problems.append("downsample_padding must be >= 1")
    if config.get("use_motion_module", False):
        if config.get("motion_module_type") != "Vanilla":
            problems.append(f"motion_module_type={config.get('motion_module_type')!r} (supported: 'Vanilla')")
        kinds = (config.get("motion_module_kwargs") or {}).get("attention_block_types", ())
        problems += [
            f"motion attention block {k!r} (supported: 'Temporal_Self')" for k in kinds if k != "Temporal_Self"
        ]
    if problems:
        raise ValueError("Unsupported U-Net config: " + "; ".join(problems))


class UNet3DConditionModel(nn.Module):
    """LatentSync's U-Net. ``config``: upstream's ``model:`` yaml section (see ``latentsync.configs.unet_config``).

    ``operations``: namespace of ``Linear, Conv2d, GroupNorm, LayerNorm`` classes used for every layer
    (default ``torch.nn``), e.g. ComfyUI's ``comfy.ops.manual_cast`` for weight streaming.
    """

    def __init__(self, config: Mapping[str, Any], *, operations: Any | None = None) -> None:
        super().__init__()
        _check_config(config)
        self.config = copy.deepcopy(dict(config))
        ops = resolve_operations(operations)
        cfg = self.config
        widths = [int(c) for c in cfg["block_out_channels"]]
        n = len(widths)
        heads = cfg.get("attention_head_dim", 8)
        heads = [int(heads)] * n if isinstance(heads, int) else [int(h) for h in heads]
        layers = int(cfg.get("layers_per_block", 2))
        use_motion = bool(cfg.get("use_motion_module", False))
        motion_res = set(cfg.get("motion_module_resolutions", (1, 2, 4, 8)))
        temb_dim = 4 * widths[0]
        spec = {
            "groups": int(cfg.get("norm_num_groups", 32)),
            "eps": float(cfg.get("norm_eps", 1e-5)),
            "context_dim": int(cfg["cross_attention_dim"]) if cfg.get("add_audio_layer", False) else None,
            "downsample_padding": int(cfg.get("downsample_padding", 1)),
            "motion_kwargs": dict(cfg.get("motion_module_kwargs") or {}),
        }

        self.conv_in = ops.Conv2d(int(cfg["in_channels"]), widths[0], kernel_size=3, padding=1)
        self.time_embedding = TimestepMLP(widths[0], temb_dim, ops)

        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["down_block_types"]):
            self.down_blocks.append(DownLevel(
                widths[max(i - 1, 0)], widths[i], temb_dim, ops, {**spec, "heads": heads[i]},
                layers=layers,
                cross_attention=_DOWN_TYPES[kind],
                motion=use_motion and 2**i in motion_res and not cfg.get("motion_module_decoder_only", False),
                downsample=i < n - 1,
            ))

        self.mid_block = MidLevel(
            widths[-1], temb_dim, ops, {**spec, "heads": heads[-1]},
            motion=use_motion and bool(cfg.get("motion_module_mid_block", False)),
            output_scale=float(cfg.get("mid_block_scale_factor", 1.0)),
        )

        rev_widths, rev_heads = widths[::-1], heads[::-1]
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["up_block_types"]):
            self.up_blocks.append(UpLevel(
                rev_widths[max(i - 1, 0)], rev_widths[min(i + 1, n - 1)], rev_widths[i], temb_dim, ops,
                {**spec, "heads": rev_heads[i]},
                layers=layers + 1,
                cross_attention=_UP_TYPES[kind],
                motion=use_motion and 2 ** (3 - i) in motion_res,  # upstream's rule (written for 4 levels)
                upsample=i < n - 1,
            ))

        self.conv_norm_out = ops.GroupNorm(spec["groups"], widths[0], eps=spec["eps"], affine=True)
        self.conv_out = ops.Conv2d(widths[0], int(cfg["out_channels"]), kernel_size=3, padding=1)

        limits = [m.max_frames for m in self.modules() if getattr(m, "max_frames", None)]
        self.max_frames: int | None = min(limits) if limits else None

    # ----------------------------------------------------------------------------------------------- inputs

    def _check_inputs(self, sample: torch.Tensor, context: torch.Tensor | None) -> tuple[int, int]:
        if sample.dim() != 5 or sample.shape[1] != self.conv_in.in_channels:
            raise ValueError(
                f"sample must be (B, {self.conv_in.in_channels}, F, h, w) video latents; got {tuple(sample.shape)}."
            )
        batch, frames = sample.shape[0], sample.shape[2]
        if self.max_frames is not None and frames > self.max_frames:
            raise ValueError(
                f"sample has {frames} frames but the motion modules' position table covers {self.max_frames}; "
                f"run chunks of at most {self.max_frames} frames."
            )
        if context is not None:
            width = self.config["cross_attention_dim"]
            given = context.shape[0] if context.dim() == 4 else context.shape[0] // max(1, frames)  # samples
            ok_shape = (context.dim() == 4 and context.shape[1] == frames) or (
                context.dim() == 3 and context.shape[0] % frames == 0
            )
            if not ok_shape or not 1 <= given <= batch or context.shape[-1] != width:
                raise ValueError(
                    f"encoder_hidden_states must be ({batch}, {frames}, S, {width}) or ({batch * frames}, S, {width}) "
                    f"audio windows for sample {tuple(sample.shape)} (or those of its last samples, the first ones "
                    f"having all-zero audio); got {tuple(context.shape)}."
                )
        return batch, frames

    def _time_features(self, timestep: torch.Tensor | float | int, batch: int, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(timestep, device=like.device).reshape(-1)
        if t.numel() not in (1, batch):
            raise ValueError(f"timestep must be a number, a 0-d tensor or have {batch} entries; got {t.shape[0]}.")
        emb = timestep_sinusoid(
            t.expand(batch), self.conv_in.out_channels,
            flip_sin_to_cos=bool(self.config.get("flip_sin_to_cos", True)),
            freq_shift=float(self.config.get("freq_shift", 0)),
        ).to(like.dtype)
        return self.time_embedding(emb)

    # ---------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        *,
        deepcache: DeepCacheState | None = None,
    ) -> torch.Tensor:
        """Predict the noise ``(B, out_channels, F, h, w)`` for ``sample (B, C_in, F, h, w)`` at ``timestep``.

        ``encoder_hidden_states``: audio windows ``(B, F, S, D)`` or ``(B*F, S, D)``; None skips cross-attention.
        Windows for only the last ``B' < B`` samples mean the first ``B - B'`` have all-zero audio (CFG's
        unconditional copies): their cross-attention is exactly the output bias (k = v = 0) and is not computed.
        ``deepcache``: see :class:`DeepCacheState` (full step when empty, cached step when filled).
        A channels-last-3d ``sample`` makes every folded activation channels-last.
        """
        self._check_inputs(sample, encoder_hidden_states)
        if deepcache is not None and len(self.up_blocks[-1].resnets) < 2:
            raise ValueError("DeepCache needs at least 2 layers in the last up block (layers_per_block >= 1).")
        if deepcache is not None and deepcache.cached is not None:
            return self.cached_step(sample, timestep, encoder_hidden_states, self._checked_cache(deepcache, sample))
        eps, captured = self.full_step(sample, timestep, encoder_hidden_states, capture=deepcache is not None)
        if deepcache is not None:
            deepcache.cached = captured
        return eps

    def _prepare(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor | None):
        """Shared head of both step kinds: folded conv_in output, SiLU(time embedding), flat audio context."""
        batch = sample.shape[0]
        fmt = (torch.channels_last if not sample.is_contiguous()
               and sample.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format)
        context = None
        if encoder_hidden_states is not None and self.config.get("add_audio_layer", False):
            context = encoder_hidden_states.flatten(0, encoder_hidden_states.dim() - 3).to(sample.dtype)
        temb_act = F.silu(self._time_features(timestep, batch, sample))
        if self.config.get("center_input_sample", False):
            sample = 2 * sample - 1.0
        return self.conv_in(fold_frames(sample, fmt)), temb_act, context

    def _head_out(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        x = self.conv_out(F.silu(frame_joint_norm(self.conv_norm_out, x, batch), inplace=True))
        return unfold_frames(x, batch)

    def full_step(
        self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor | None = None, *,
        capture: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole U-Net; also returns DeepCache's hidden state when ``capture`` (tensors only: compilable)."""
        batch = sample.shape[0]
        x, temb_act, context = self._prepare(sample, timestep, encoder_hidden_states)
        last = self.up_blocks[-1]
        skips = [x]
        for level in self.down_blocks:
            x = level(x, temb_act, context, batch, skips)
        x = self.mid_block(x, temb_act, context, batch)
        captured = None
        for level in self.up_blocks:
            point = len(level.resnets) - 2 if (capture and level is last) else None
            x, got = level(x, temb_act, context, batch, skips, capture=point)
            captured = got if got is not None else captured
        return self._head_out(x, batch), (as_video(captured, batch) if capture else None)

    def cached_step(
        self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor | None, cached: torch.Tensor
    ) -> torch.Tensor:
        """DeepCache's cheap step: conv_in -> the last up-block layer on ``cat(cached, x)`` -> conv_out."""
        batch = sample.shape[0]
        x, temb_act, context = self._prepare(sample, timestep, encoder_hidden_states)
        last = self.up_blocks[-1]
        x = last.layer(len(last.resnets) - 1, torch.cat((fold_frames(cached.to(x.dtype), memory_format_of(x)), x),
                                                         dim=1), temb_act, context, batch)
        return self._head_out(x, batch)

    def _checked_cache(self, state: DeepCacheState, sample: torch.Tensor) -> torch.Tensor:
        """The cached hidden state; refuses a cache from another chunk shape."""
        cached = state.cached
        b, _, f, h, w = sample.shape
        expected = (b, self.up_blocks[-1].resnets[-1].conv1.out_channels, f, h, w)
        if tuple(cached.shape) != expected:
            raise ValueError(
                f"DeepCacheState holds a cache of shape {tuple(cached.shape)} but this input needs {expected}; "
                "clear the state (state.clear()) whenever the chunk or batch changes."
            )
        return cached

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the parameters (conv_in's)."""
        return self.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        """device of the parameters (conv_in's)."""
        return self.conv_in.weight.device
