"""Import diffusers' AutoencoderKL on the GPU image, where ``peft`` (which diffusers imports) needs a transformers
that the image's diffusers cannot use, and the shared harness may have put a name-only ``transformers`` stub first.

Hiding both while diffusers loads makes it take its no-transformers path; they are restored afterwards. Used by the
harness entry (``bench/harness/latentsync_pack_bench.py``) and ``tools/device_checks/check_pipeline_device.py``.
"""

import importlib
import sys


def prefer_image_diffusers() -> None:
    """Import diffusers the GPU image's way before anything else does; where that fails (a normal install), the
    usual import follows later."""
    try:
        autoencoder_kl()
    except (ImportError, RuntimeError):
        pass


def autoencoder_kl():
    """``diffusers.AutoencoderKL``, loaded without transformers / peft."""
    hidden = ("transformers", "peft")
    saved = {name: sys.modules.get(name) for name in hidden}
    for name in hidden:
        sys.modules[name] = None  # find_spec() then reports them missing
    try:
        return importlib.import_module("diffusers").AutoencoderKL  # the lazy attribute loads what the VAE needs
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
