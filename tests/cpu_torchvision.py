"""Make PyPI's CUDA-built torchvision importable next to a CPU-only torch (test environments only).

CI installs torchvision 0.28.0 from PyPI for the vendored 2024 ComfyUI; that wheel is a CUDA build whose C++ ops
cannot load with CPU torch, and ``import torchvision`` then dies while registering fake kernels for them. diffusers
(the tiny VAE in the tests) imports transformers, which imports torchvision. Only torchvision's Python parts are
needed, so the two registration modules are replaced by empty ones before anything imports torchvision.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

REGISTRATION_MODULES = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def torchvision_is_cuda_build_on_cpu_torch() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin:
        return False
    import torch

    if torch.version.cuda is not None:
        return False
    version = Path(spec.origin).with_name("version.py")
    text = version.read_text(errors="replace") if version.is_file() else ""
    match = re.search(r"^__version__\s*=\s*['\"][^'\"]*\+cu\d+['\"]", text, re.M)  # e.g. '0.28.0+cu130'
    return bool(match)


def stub_registrations_if_needed() -> bool:
    """Insert empty registration modules when torchvision cannot load its ops here; returns whether it did."""
    if not torchvision_is_cuda_build_on_cpu_torch():
        return False
    for name in REGISTRATION_MODULES:
        sys.modules.setdefault(name, types.ModuleType(name))
    return True
