"""Reading upstream's SyncNet training yaml (``configs/syncnet/*.yaml``) into checked settings.

Upstream reads it with OmegaConf; the files are plain YAML (no interpolation), so PyYAML reads them here. Every
key the training uses is checked before anything heavy runs; a wrong one gets a message naming the key and the fix.
Keys upstream has but this trainer does not use (``ckpt.inference_ckpt_path``, ``data.audio_mel_cache_dir``: mels
are kept in memory) are accepted and ignored.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Mapping

SECTIONS = ("model", "ckpt", "data", "optimizer", "run")


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key and what to write instead."""


@dataclass(frozen=True)
class SyncNetTrainConfig:
    """The settings of one StableSyncNet training run (names as in upstream's yaml)."""

    model: dict[str, Any]
    resume_ckpt_path: str
    save_ckpt_steps: int
    train_output_dir: str
    num_val_samples: int
    batch_size: int
    gradient_accumulation_steps: int
    num_workers: int
    num_frames: int
    resolution: int
    train_fileslist: str
    train_data_dir: str
    val_fileslist: str
    val_data_dir: str
    lower_half: bool
    audio_sample_rate: int
    video_fps: float
    lr: float
    max_grad_norm: float
    max_train_steps: int
    validation_steps: int
    mixed_precision_training: bool
    seed: int
    clip_cache: int = 8
    source: str = "<dict>"


def _get(raw: Mapping[str, Any], section: str, key: str, kind: type, *, default: Any = None, fix: str = "") -> Any:
    """``raw[section][key]`` checked against ``kind`` (bool, int, float, str)."""
    where = f"{section}.{key}"
    block = raw.get(section)
    if not isinstance(block, Mapping):
        raise ConfigError(f"config section '{section}' is missing; copy it from upstream's configs/syncnet/*.yaml.")
    if key not in block or block[key] is None:
        if default is not None:
            return default
        raise ConfigError(f"config key '{where}' is missing; {fix or 'add it (see configs/syncnet/*.yaml)'}.")
    value = block[key]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{where}' must be true or false, got {value!r}.")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{where}' must be a whole number, got {value!r}; {fix or 'write e.g. 1'}.")
        return value
    if kind is float:
        if isinstance(value, str):  # PyYAML reads 1e-5 (no dot) as a string; OmegaConf as a float
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"config key '{where}' must be a number, got {value!r}.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{where}' must be a number, got {value!r}.")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"config key '{where}' must be a text (a path or \"\"), got {value!r}.")
    return value


def _positive(value: float, where: str, fix: str) -> None:
    if not value > 0:
        raise ConfigError(f"config key '{where}' must be greater than 0, got {value!r}; {fix}.")


def parse_config(raw: Mapping[str, Any], source: str = "<dict>") -> SyncNetTrainConfig:
    """Check a loaded yaml mapping and return the settings (ConfigError names the first bad key)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a training config is a YAML mapping with sections {', '.join(SECTIONS)}.")
    model = raw.get("model")
    if not isinstance(model, Mapping):
        raise ConfigError(f"{source}: config section 'model' is missing; copy it from upstream's configs/syncnet/*.yaml.")
    if _get(raw, "data", "latent_space", bool, default=False):
        raise ConfigError("config key 'data.latent_space' is true: latent-space SyncNet training (VAE-encoded frames) "
                          "is not supported yet; use a pixel config (syncnet_16_pixel*.yaml, latent_space: false).")
    cfg = SyncNetTrainConfig(
        model=copy.deepcopy(dict(model)),
        resume_ckpt_path=_get(raw, "ckpt", "resume_ckpt_path", str, default=""),
        save_ckpt_steps=_get(raw, "ckpt", "save_ckpt_steps", int),
        train_output_dir=_get(raw, "data", "train_output_dir", str, default=""),
        num_val_samples=_get(raw, "data", "num_val_samples", int, default=0),
        batch_size=_get(raw, "data", "batch_size", int),
        gradient_accumulation_steps=_get(raw, "data", "gradient_accumulation_steps", int, default=1),
        num_workers=_get(raw, "data", "num_workers", int, default=0),
        num_frames=_get(raw, "data", "num_frames", int),
        resolution=_get(raw, "data", "resolution", int),
        train_fileslist=_get(raw, "data", "train_fileslist", str, default=""),
        train_data_dir=_get(raw, "data", "train_data_dir", str, default=""),
        val_fileslist=_get(raw, "data", "val_fileslist", str, default=""),
        val_data_dir=_get(raw, "data", "val_data_dir", str, default=""),
        lower_half=_get(raw, "data", "lower_half", bool),
        audio_sample_rate=_get(raw, "data", "audio_sample_rate", int, default=16000),
        video_fps=_get(raw, "data", "video_fps", float, default=25.0),
        lr=_get(raw, "optimizer", "lr", float),
        max_grad_norm=_get(raw, "optimizer", "max_grad_norm", float),
        max_train_steps=_get(raw, "run", "max_train_steps", int),
        validation_steps=_get(raw, "run", "validation_steps", int),
        mixed_precision_training=_get(raw, "run", "mixed_precision_training", bool, default=False),
        seed=_get(raw, "run", "seed", int),
        clip_cache=_get(raw, "data", "clip_cache", int, default=8),
        source=source,
    )
    for where, value, fix in (
        ("ckpt.save_ckpt_steps", cfg.save_ckpt_steps, "write how many steps between checkpoints, e.g. 2500"),
        ("data.batch_size", cfg.batch_size, "samples per process and step, e.g. 256"),
        ("data.gradient_accumulation_steps", cfg.gradient_accumulation_steps, "write 1 for no accumulation"),
        ("data.num_frames", cfg.num_frames, "the released configs use 16"),
        ("data.resolution", cfg.resolution, "the released configs use 256"),
        ("data.video_fps", cfg.video_fps, "the released configs use 25"),
        ("optimizer.lr", cfg.lr, "the released configs use 1e-5"),
        ("optimizer.max_grad_norm", cfg.max_grad_norm, "the released configs use 1.0"),
        ("run.max_train_steps", cfg.max_train_steps, "write how many optimizer steps to train"),
        ("run.validation_steps", cfg.validation_steps, "write how many steps between validations"),
        ("data.clip_cache", cfg.clip_cache, "decoded clips kept in memory per process, e.g. 8"),
    ):
        _positive(value, where, fix)
    if cfg.num_workers < 0:
        raise ConfigError(f"config key 'data.num_workers' must be 0 or more, got {cfg.num_workers}.")
    if cfg.num_val_samples < 0:
        raise ConfigError(f"config key 'data.num_val_samples' must be 0 or more, got {cfg.num_val_samples}.")
    if cfg.audio_sample_rate != 16000:
        raise ConfigError(f"config key 'data.audio_sample_rate' is {cfg.audio_sample_rate}; the SyncNet mel is "
                          f"defined at 16000 Hz, write 16000.")
    if not (cfg.train_fileslist or cfg.train_data_dir):
        raise ConfigError("config keys 'data.train_fileslist' and 'data.train_data_dir' are both empty; give a "
                          "files list (one mp4 per line) or a folder of aligned face mp4s.")
    _check_model(cfg)
    return cfg


def _check_model(cfg: SyncNetTrainConfig) -> None:
    """The model section builds, and its visual input matches the frames the data section gives it."""
    from ..metrics.stable_syncnet import StableSyncNet
    import torch

    try:
        with torch.device("meta"):
            StableSyncNet(cfg.model)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"config section 'model' does not build a StableSyncNet: {exc}") from exc
    visual = cfg.model["visual_encoder"]["in_channels"]
    if visual != 3 * cfg.num_frames:
        raise ConfigError(f"config key 'model.visual_encoder.in_channels' is {visual} but data.num_frames is "
                          f"{cfg.num_frames}: pixel frames give 3 x {cfg.num_frames} = {3 * cfg.num_frames} channels.")
    if cfg.model["audio_encoder"]["in_channels"] != 1:
        raise ConfigError("config key 'model.audio_encoder.in_channels' must be 1 (one mel spectrogram).")


def load_config(path: str | os.PathLike) -> SyncNetTrainConfig:
    """Read and check a yaml config file."""
    path = os.fspath(path)
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML ships with ComfyUI and the test environment
        raise ConfigError("reading a training config needs PyYAML: pip install pyyaml") from exc
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
