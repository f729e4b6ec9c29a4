"""Shared by the SyncNet training tests: the tiny model config, real face clips written as mp4s
(``tools/training_clips.py``), yaml configs."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from training_clips import write_clip  # noqa: E402  (the clip writer of the training tools, also used here)
FIXTURE = REPO / "tests" / "fixtures" / "train_syncnet"


def tiny_model() -> dict[str, Any]:
    """The parity fixture's tiny towers (both end at 32 x 2 x 2)."""
    return copy.deepcopy(json.loads((FIXTURE / "config.json").read_text())["model"])


def fixture_clips() -> list[tuple[np.ndarray, np.ndarray]]:
    """The fixture's face clips: frames (F, 40, 40, 3) uint8 and 16 kHz int16 audio."""
    from safetensors.numpy import load_file

    t = load_file(str(FIXTURE / "outputs.safetensors"))
    out, i = [], 0
    while f"clip{i}.frames" in t:
        out.append((t[f"clip{i}.frames"], t[f"clip{i}.wav_int16"]))
        i += 1
    return out


def write_clips(folder: Path) -> list[Path]:
    """The fixture's clips as mp4 files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_clip(folder / f"clip{i}.mp4", f, w) for i, (f, w) in enumerate(fixture_clips())]


def config_dict(files: Path, **changes: Any) -> dict[str, Any]:
    """An upstream-format config for the tiny model on the clips in ``files``; ``changes`` as "section.key"."""
    raw = {
        "model": tiny_model(),
        "ckpt": {"resume_ckpt_path": "", "inference_ckpt_path": "", "save_ckpt_steps": 2},
        "data": {"train_output_dir": "", "num_val_samples": 0, "batch_size": 2, "gradient_accumulation_steps": 1,
                 "num_workers": 0, "latent_space": False, "num_frames": 16, "resolution": 32,
                 "train_fileslist": str(files), "train_data_dir": "", "val_fileslist": "", "val_data_dir": "",
                 "audio_mel_cache_dir": "", "lower_half": True, "audio_sample_rate": 16000, "video_fps": 25},
        "optimizer": {"lr": 1e-3, "max_grad_norm": 1.0},
        "run": {"max_train_steps": 4, "validation_steps": 1000, "mixed_precision_training": True, "seed": 42},
    }
    for key, value in changes.items():
        section, name = key.split(".")
        raw[section][name] = value
    return raw


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    """The config as yaml."""
    import yaml

    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def files_list(folder: Path, clips: list[Path]) -> Path:
    """A files list (one clip per line)."""
    path = folder / "files.txt"
    path.write_text("".join(f"{c}\n" for c in clips))
    return path
