"""Entry point the shared harness imports as ``--impl latentsync_pack_bench:Impl``.

Its own name keeps this pack's ``latentsync`` package (and ``bench/``) off the path of upstream's case processes,
whose package has the same name. Nothing happens at import: constructing ``Impl`` puts the repository on
``sys.path``, loads diffusers, and builds the real adapter from ``bench/latentsync_impl.py``.
"""

import importlib
import importlib.util
import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def _adapter_class():
    if "latentsync_pack_impl" not in sys.modules:
        _import_diffusers_without_transformers()
        if _REPO not in sys.path:
            sys.path.insert(0, _REPO)
        spec = importlib.util.spec_from_file_location("latentsync_pack_impl",
                                                      os.path.join(_REPO, "bench", "latentsync_impl.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["latentsync_pack_impl"] = module
        spec.loader.exec_module(module)
    return sys.modules["latentsync_pack_impl"].Impl


class Impl:
    """Builds and returns the real adapter (``bench/latentsync_impl.py: Impl``)."""

    def __new__(cls, *args, **kwargs):
        return _adapter_class()(*args, **kwargs)
