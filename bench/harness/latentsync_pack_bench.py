"""Entry point the shared harness imports as ``--impl latentsync_pack_bench:Impl``.

Its own name keeps this pack's ``latentsync`` package (and ``bench/``) off the path of upstream's case processes,
whose package has the same name: only a process that imports this module gets the repository on ``sys.path``.
"""

import importlib.util
import os
import sys

def _import_diffusers_without_transformers() -> None:
    """The harness puts a name-only ``transformers`` stub on the path (for upstream) and the GPU image has ``peft``,
    which diffusers imports and which needs the real transformers. Hiding both while diffusers loads makes it take
    its no-transformers path; they are restored afterwards."""
    hidden = ("transformers", "peft")
    saved = {name: sys.modules.get(name) for name in hidden}
    for name in hidden:
        sys.modules[name] = None  # find_spec() then reports them missing
    try:
        importlib.import_module("diffusers").AutoencoderKL  # the lazy attribute loads the modules the VAE needs
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


_import_diffusers_without_transformers()
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, _REPO)
_spec = importlib.util.spec_from_file_location("latentsync_pack_impl", os.path.join(_REPO, "bench", "latentsync_impl.py"))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
Impl = _module.Impl
