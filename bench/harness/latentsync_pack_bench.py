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


def _adapter_class():
    if "latentsync_pack_impl" not in sys.modules:
        spec = importlib.util.spec_from_file_location("latentsync_bench_diffusers",
                                                      os.path.join(_REPO, "bench", "diffusers_import.py"))
        helper = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helper)
        helper.autoencoder_kl()
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
