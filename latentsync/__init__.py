"""LatentSync 1.5/1.6 lip-sync inference in plain PyTorch (no ComfyUI imports in this package)."""

__version__ = "0.1.0"
