"""The few ComfyUI services the nodes use, behind functions that work on 2024 and current ComfyUI alike.

Everything imports ComfyUI lazily, so the pack's import stays light and these helpers can be imported
(not called) outside ComfyUI.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Optional

log = logging.getLogger(__name__)


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it when its parent is already loaded)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def has_video_type() -> bool:
    """True on ComfyUI >= 0.3.31, which has the VIDEO type (comfy_api's VideoFromFile)."""
    return has_module("comfy_api.input_impl") or has_module("comfy_api.latest")


def torch_device() -> Any:
    import comfy.model_management as mm

    return mm.get_torch_device()


def intermediate_device() -> Any:
    """Where node outputs live (CPU unless --gpu-only)."""
    import comfy.model_management as mm

    return mm.intermediate_device()


def offload_device() -> Any:
    import comfy.model_management as mm

    return mm.unet_offload_device()


def free_memory_bytes(device) -> int:
    import comfy.model_management as mm

    return int(mm.get_free_memory(device))


def oom_exceptions() -> tuple[type[BaseException], ...]:
    import comfy.model_management as mm

    oom = getattr(mm, "OOM_EXCEPTION", None)
    return (oom,) if isinstance(oom, type) else (MemoryError,)


def soft_empty_cache() -> None:
    import comfy.model_management as mm

    mm.soft_empty_cache()


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


def load_models(patchers: Iterable[Any], memory_required: int = 0, force_full_load: bool = False) -> None:
    """``load_models_gpu`` with only the keyword arguments this ComfyUI knows (2024 lacks force_full_load)."""
    import comfy.model_management as mm

    fn = mm.load_models_gpu
    kwargs: dict[str, Any] = {"memory_required": int(memory_required)}
    if force_full_load and "force_full_load" in inspect.signature(fn).parameters:
        kwargs["force_full_load"] = True
    patchers = list(patchers)
    fn(patchers, **kwargs)
    for patcher in patchers:
        _buffers_to_load_device(patcher)


def _buffers_to_load_device(patcher: Any) -> None:
    """Put every buffer of a loaded model on its compute device.

    ComfyUI moves parameters (streaming them in low-VRAM mode) but, when it loads a model only partially, leaves
    buffers of parameter-less modules (position tables) where they were; they are small, so move them.
    """
    device = patcher.load_device
    for module in patcher.model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.device != device:
                module._buffers[name] = buf.to(device)


def _holder(module: Any) -> Any:
    """A bare nn.Module around ``module``: ComfyUI's ModelPatcher sets bookkeeping attributes (``device``,
    ``model_lowvram``, ...) on the module it manages, which must not collide with the model's own API."""
    import torch

    class LatentSyncModule(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    return LatentSyncModule(module)


def make_patcher(module: Any, load_device: Any = None, offload: Any = None) -> Any:
    """Wrap a torch module so ComfyUI's memory manager can move, partially load and evict it."""
    import comfy.model_patcher

    load_device = load_device if load_device is not None else torch_device()
    offload = offload if offload is not None else offload_device()
    return comfy.model_patcher.ModelPatcher(_holder(module), load_device=load_device, offload_device=offload)


def module_of(patcher: Any) -> Any:
    """The model inside a patcher made by :func:`make_patcher`."""
    return patcher.model.inner


def operations() -> SimpleNamespace:
    """Layer classes from comfy.ops.disable_weight_init: plain layers when the model is fully loaded, weights
    streamed per layer when ComfyUI loads it partially (low VRAM). Weights are stored in the compute dtype, so
    no per-call cast is needed (manual_cast would add one).

    Classes this ComfyUI's ops lack (2024 has no Conv1d) fall back to torch.nn.
    """
    import torch

    try:
        import comfy.ops

        ops = comfy.ops.disable_weight_init
    except (ImportError, AttributeError):
        ops = None
    names = ("Linear", "Conv1d", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm")
    return SimpleNamespace(**{n: getattr(ops, n, None) or getattr(torch.nn, n) for n in names})


class Progress:
    """A ComfyUI progress bar that also honours Cancel between updates.

    ``update_absolute`` goes through ComfyUI's global hook, which raises when the user interrupted;
    ``tick`` is for loops that report nothing but should still stop promptly.
    """

    def __init__(self, total: int):
        import comfy.utils

        self.total = max(1, int(total))
        self.bar = comfy.utils.ProgressBar(self.total)

    def set(self, value: int, total: Optional[int] = None) -> None:
        if total is not None:
            self.total = max(1, int(total))
        self.bar.update_absolute(int(value), self.total)
        check_interrupt()

    def add(self, amount: int = 1) -> None:
        self.set(self.bar.current + amount)

    def callback(self) -> Callable[[int, int], None]:
        return lambda done, total: self.set(done, total)


def comfy_args() -> Any:
    """ComfyUI's parsed command line (for --disable-metadata), or None outside ComfyUI."""
    try:
        from comfy.cli_args import args

        return args
    except ImportError:
        return None
