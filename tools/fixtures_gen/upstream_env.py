"""How every fixture generator finds (``parse_args``) and imports upstream LatentSync's checkout next to this
repository's library.

Both packages are called ``latentsync``: upstream's is imported by its own name from an extracted checkout put
first on ``sys.path`` (``use_upstream``), and this repository's is loaded under the name ``ours`` (``load_ours``).

Before upstream is imported, two things it imports but no generator uses are stubbed (empty modules in
``sys.modules``), because they cannot be loaded in the generators' CPU venv:

* ``insightface`` / ``insightface.app`` (only when it is not installed): upstream's ``ImageProcessor`` imports
  ``latentsync.utils.face_detector``, which imports ``FaceAnalysis`` for a GPU face detector that the generators
  never construct;
* on a CPU torch, ``torchvision._meta_registrations`` and ``torchvision._autograd_registrations``: PyPI's CUDA
  torchvision registers kernels for its compiled ops there and fails at import ("operator torchvision::nms does
  not exist"); upstream and ``lpips`` only use its Python parts (``transforms``, ``models``).

Upstream reads ``configs/``, ``latentsync/utils/mask.png`` and ``checkpoints/`` relative to the working
directory, so ``use_upstream(..., workdir=...)`` copies the first two there and changes into it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse_args(description: str, fixture: str, needs: str, media: bool = True) -> argparse.Namespace:
    """A generator's arguments: --upstream (or $LS_UPSTREAM), a checkout that has the file ``needs``; --media
    (demo1/demo2 files) when ``media``; --out (default tests/fixtures/``fixture``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--upstream", default=os.environ.get("LS_UPSTREAM"), help="extracted upstream checkout")
    if media:
        p.add_argument("--media", default=str(REPO.parent / "shared" / "media"), help="folder with demo1/demo2 files")
    p.add_argument("--out", default=str(REPO / "tests" / "fixtures" / fixture))
    args = p.parse_args()
    if not args.upstream or not (Path(args.upstream) / needs).is_file():
        p.error("give --upstream (or LS_UPSTREAM): an extracted bytedance/LatentSync checkout at a229c39")
    return args


def load_ours(*submodules: str) -> types.ModuleType:
    """This repository's library as ``ours`` with ``metrics.tiny`` (the weight recipe) and ``submodules`` loaded."""
    spec = importlib.util.spec_from_file_location("ours", REPO / "latentsync" / "__init__.py",
                                                  submodule_search_locations=[str(REPO / "latentsync")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["ours"] = module
    spec.loader.exec_module(module)
    for name in ("metrics.tiny", *submodules):
        importlib.import_module(f"ours.{name}")
    return module


def stub_unused_imports() -> None:
    """Empty stand-ins for insightface and PyPI torchvision's CUDA op registrations (see the module docstring)."""
    import torch

    if torch.version.cuda is None:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.setdefault(name, types.ModuleType(name))
    try:
        import insightface.app  # noqa: F401
    except ImportError:
        app = types.ModuleType("insightface.app")
        app.FaceAnalysis = None
        sys.modules["insightface"] = types.ModuleType("insightface")
        sys.modules["insightface.app"] = app


def use_upstream(upstream: str, workdir: str | None = None) -> None:
    """Make the checkout ``upstream`` importable (stubs first); with ``workdir``, run upstream from that folder."""
    if workdir is not None:
        shutil.copytree(os.path.join(upstream, "configs"), os.path.join(workdir, "configs"))
        os.makedirs(os.path.join(workdir, "latentsync", "utils"))
        shutil.copy(os.path.join(upstream, "latentsync", "utils", "mask.png"),
                    os.path.join(workdir, "latentsync", "utils"))
        os.chdir(workdir)
    stub_unused_imports()
    sys.path.insert(0, upstream)


def check_from_upstream(module: types.ModuleType, upstream: str) -> None:
    """Fail unless ``module`` was imported from the checkout (not this repository's library of the same name)."""
    if not Path(module.__file__).resolve().is_relative_to(Path(upstream).resolve()):
        raise RuntimeError(f"{module.__name__} was imported from {module.__file__}, not from {upstream}")
