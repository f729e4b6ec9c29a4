"""Reading upstream's U-Net training yaml (``configs/unet/stage1.yaml`` / ``stage2.yaml`` / ``stage2_efficient.yaml``).

Upstream's keys keep their meaning. Paths upstream hard-codes or downloads (sd-vae-ft-mse, whisper, LPIPS' VGG)
are read from an optional ``paths`` section; memory options (this pack's) from ``memory``:

```yaml
paths: {vae: checkpoints/sd-vae-ft-mse, whisper: checkpoints/whisper/tiny.pt,
        lpips_vgg16: checkpoints/auxiliary/vgg16-397923af.pth, lpips_lin: checkpoints/auxiliary/lpips_vgg_v0.1.pth,
        videomae: checkpoints/auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth}
memory: {precision: fp16 | bf16 | fp32, frozen_dtype: auto | float16 | bfloat16 | float32,
         optimizer: adamw | adamw_fused | adamw_8bit}
```

``run.enable_gradient_checkpointing`` (upstream's key) checkpoints the U-Net's blocks. ``precision`` defaults to
fp16 when ``run.mixed_precision_training`` is true (upstream), and applies on CUDA only; the CPU runs float32.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .syncnet_config import ConfigError, _get, _positive

PRECISIONS = ("fp16", "bf16", "fp32")
FROZEN_DTYPES = ("auto", "float16", "bfloat16", "float32")
OPTIMIZERS = ("adamw", "adamw_fused", "adamw_8bit")


@dataclass(frozen=True)
class UNetTrainConfig:
    """The settings of one U-Net training run (names as in upstream's yaml)."""

    model: dict[str, Any]
    run: dict[str, Any]
    resume_ckpt_path: str
    save_ckpt_steps: int
    train_output_dir: str
    train_fileslist: str
    train_data_dir: str
    syncnet_config_path: str
    mask_image_path: str
    batch_size: int
    num_workers: int
    num_frames: int
    resolution: int
    video_fps: float
    audio_feat_length: tuple[int, int]
    lr: float
    scale_lr: bool
    max_grad_norm: float
    lr_scheduler: str
    lr_warmup_steps: int
    max_train_steps: int
    seed: int
    gradient_checkpointing: bool
    precision: str
    frozen_dtype: str
    optimizer: str
    paths: dict[str, str] = field(default_factory=dict)
    source: str = "<dict>"

    @property
    def stage_pixel(self) -> bool:
        """Whether x0 is decoded to pixels (stage2's pixel losses)."""
        return bool(self.run["pixel_space_supervise"])


RUN_KEYS = {  # key -> (type, default or None = required)
    "pixel_space_supervise": (bool, None), "use_syncnet": (bool, None), "sync_loss_weight": (float, 0.05),
    "perceptual_loss_weight": (float, 0.1), "recon_loss_weight": (float, 1.0), "trepa_loss_weight": (float, 10.0),
    "use_mixed_noise": (bool, True), "mixed_noise_alpha": (float, 1.0), "mixed_precision_training": (bool, False),
    "enable_gradient_checkpointing": (bool, False), "seed": (int, None), "max_train_steps": (int, None),
}


def parse_config(raw: Mapping[str, Any], source: str = "<dict>") -> UNetTrainConfig:
    """Check a loaded yaml mapping and return the settings (ConfigError names the first bad key)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
        raise ConfigError(f"{source}: a U-Net training config has sections model, data, ckpt, run, optimizer "
                          f"(copy one of upstream's configs/unet/stage*.yaml).")
    run = {k: _get(raw, "run", k, t, default=d) for k, (t, d) in RUN_KEYS.items()}
    trainable = raw["run"].get("trainable_modules") or []
    if not isinstance(trainable, list) or not all(isinstance(x, str) for x in trainable):
        raise ConfigError("config key 'run.trainable_modules' must be a list of name parts, e.g. [motion_modules., attentions.].")
    run["trainable_modules"] = list(trainable)
    memory = raw.get("memory") or {}
    paths = raw.get("paths") or {}
    if not isinstance(memory, Mapping) or not isinstance(paths, Mapping):
        raise ConfigError("config sections 'memory' and 'paths' must be mappings.")
    feat = raw.get("data", {}).get("audio_feat_length", [2, 2])
    precision = str(memory.get("precision", "fp16" if run["mixed_precision_training"] else "fp32"))
    cfg = UNetTrainConfig(
        model=copy.deepcopy(dict(raw["model"])), run=run,
        resume_ckpt_path=_get(raw, "ckpt", "resume_ckpt_path", str, default=""),
        save_ckpt_steps=_get(raw, "ckpt", "save_ckpt_steps", int),
        train_output_dir=_get(raw, "data", "train_output_dir", str, default=""),
        train_fileslist=_get(raw, "data", "train_fileslist", str, default=""),
        train_data_dir=_get(raw, "data", "train_data_dir", str, default=""),
        syncnet_config_path=_get(raw, "data", "syncnet_config_path", str, default=""),
        mask_image_path=_get(raw, "data", "mask_image_path", str, default=""),
        batch_size=_get(raw, "data", "batch_size", int), num_workers=_get(raw, "data", "num_workers", int, default=0),
        num_frames=_get(raw, "data", "num_frames", int), resolution=_get(raw, "data", "resolution", int),
        video_fps=_get(raw, "data", "video_fps", float, default=25.0),
        audio_feat_length=(int(feat[0]), int(feat[1])),
        lr=_get(raw, "optimizer", "lr", float), scale_lr=_get(raw, "optimizer", "scale_lr", bool, default=False),
        max_grad_norm=_get(raw, "optimizer", "max_grad_norm", float),
        lr_scheduler=_get(raw, "optimizer", "lr_scheduler", str, default="constant"),
        lr_warmup_steps=_get(raw, "optimizer", "lr_warmup_steps", int, default=0),
        max_train_steps=run["max_train_steps"], seed=run["seed"],
        gradient_checkpointing=run["enable_gradient_checkpointing"], precision=precision,
        frozen_dtype=str(memory.get("frozen_dtype", "auto")), optimizer=str(memory.get("optimizer", "adamw")),
        paths={str(k): str(v) for k, v in paths.items()}, source=source,
    )
    for where, value in (("ckpt.save_ckpt_steps", cfg.save_ckpt_steps), ("data.batch_size", cfg.batch_size),
                         ("data.num_frames", cfg.num_frames), ("data.resolution", cfg.resolution),
                         ("optimizer.lr", cfg.lr), ("optimizer.max_grad_norm", cfg.max_grad_norm),
                         ("run.max_train_steps", cfg.max_train_steps)):
        _positive(value, where, "see upstream's configs/unet/stage*.yaml")
    if cfg.resolution % 8:
        raise ConfigError(f"config key 'data.resolution' must be a multiple of 8 (the VAE's factor), got {cfg.resolution}.")
    for key, value, allowed in (("memory.precision", cfg.precision, PRECISIONS),
                                ("memory.frozen_dtype", cfg.frozen_dtype, FROZEN_DTYPES),
                                ("memory.optimizer", cfg.optimizer, OPTIMIZERS),
                                ("optimizer.lr_scheduler", cfg.lr_scheduler, ("constant", "constant_with_warmup"))):
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; write one of {', '.join(allowed)}.")
    if run["use_syncnet"] and not cfg.model.get("add_audio_layer", False):
        raise ConfigError("config key 'run.use_syncnet' is true but model.add_audio_layer is false; upstream only "
                          "uses the SyncNet loss with audio layers.")
    _check_model(cfg)
    return cfg


def _check_model(cfg: UNetTrainConfig) -> None:
    """The model section builds a U-Net whose motion modules cover data.num_frames."""
    import torch

    from ..models.unet import UNet3DConditionModel

    try:
        with torch.device("meta"):
            unet = UNet3DConditionModel(cfg.model)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"config section 'model' does not build the U-Net: {exc}") from exc
    if unet.max_frames is not None and cfg.num_frames > unet.max_frames:
        raise ConfigError(f"config key 'data.num_frames' is {cfg.num_frames} but the motion modules cover "
                          f"{unet.max_frames} frames (model.motion_module_kwargs.temporal_position_encoding_max_len).")


def load_config(path: str | os.PathLike) -> UNetTrainConfig:
    """Read and check a yaml config file."""
    import yaml

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read the config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_config(raw, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
