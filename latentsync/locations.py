"""Where the command line looks for model files, and the ComfyUI installation it can share them with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

CACHE_MODELS = Path("~") / ".cache" / "latentsync" / "models"


def looks_like_comfyui(folder: Path) -> bool:
    """A ComfyUI root: ``models/`` and ``custom_nodes/`` beside ComfyUI's ``main.py`` or its ``comfy`` package."""
    return (folder / "models").is_dir() and (folder / "custom_nodes").is_dir() and (
        (folder / "main.py").is_file() or (folder / "comfy").is_dir())


def pack_comfyui() -> Optional[Path]:
    """The ComfyUI root when this library runs from a node pack inside its ``custom_nodes`` folder, else None."""
    pack = Path(__file__).resolve().parents[1]
    comfy = pack.parent.parent
    if pack.parent.name == "custom_nodes" and (comfy / "models").is_dir():
        return comfy
    return None


def default_models_dir_and_origin() -> tuple[str, str]:
    """The models root used when ``--models-dir`` is not given, and why it was chosen."""
    env = os.environ.get("LATENTSYNC_MODELS")
    if env:
        return env, "$LATENTSYNC_MODELS"
    comfy = pack_comfyui()
    if comfy is not None:
        return str(comfy / "models"), "ComfyUI's models folder (this pack sits in its custom_nodes)"
    return str(CACHE_MODELS.expanduser()), "default; no $LATENTSYNC_MODELS and not inside ComfyUI"


def default_models_dir() -> str:
    """$LATENTSYNC_MODELS, else ComfyUI's models folder when the pack sits in custom_nodes, else ~/.cache."""
    return default_models_dir_and_origin()[0]
