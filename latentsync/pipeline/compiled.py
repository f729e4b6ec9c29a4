"""Optional ``torch.compile`` of the U-Net for one chunk shape, with eager fallback.

Compiling fuses the norms, activations and layout copies between the GEMMs: on an H200 a full step runs about
1.6x faster and a DeepCache step 2x (see bench/unet_speed.py). Each new input shape costs a compile (about 80 s
for the full step), so only chunks of ``frames`` frames use the compiled graphs; other shapes (a video's short
tail chunk) run eagerly (or, as an experiment, replayed as CUDA graphs: :meth:`CompiledUNet.short_chunk_steps`).
Where compiling is impossible (no Triton, as on many Windows installs; no C++ compiler on CPU) or fails, the model
runs eagerly and :attr:`CompiledUNet.fallback_reason` says why. The compiled kernels are kept across processes
(:mod:`.compile_cache`): a later process of the same setup compiles in about 20 s instead of about 2 minutes
(H100, 256 px).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from .compile_cache import (CompileArtifacts, default_cache_dir, first_run_of, kernels_kept, package_version,
                            setup_key)
from .cuda_graphs import ShapeGraph, clone_outputs

log = logging.getLogger(__name__)


CUDA_GRAPHS_MODE = "reduce-overhead"  # torch.compile's mode that replays CUDA graphs


def call_graph(graph: Any, mode: Optional[str], *args: Any, **kwargs: Any) -> Any:
    """``graph(*args, **kwargs)``; under CUDA graphs a new step is marked first and the outputs are copied, since
    the graph's next replay writes them in place."""
    if mode != CUDA_GRAPHS_MODE:
        return graph(*args, **kwargs)
    torch.compiler.cudagraph_mark_step_begin()
    return clone_outputs(graph(*args, **kwargs))


def compile_unavailable_reason(device: torch.device | str) -> Optional[str]:
    """None when torch.compile can build kernels for ``device``; else a sentence saying what is missing."""
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return "this PyTorch has no torch.compile"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton, or triton-windows on Windows)"
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++", "cl")):
        return "no C++ compiler found for CPU kernels"
    if device.type not in ("cuda", "cpu"):
        return f"compiling is not supported on {device.type}"
    return None


class CompiledUNet:
    """Calls like the U-Net (``unet(sample, t, audio, deepcache=...)``) but through compiled graphs.

    ``fixed_batch``: the sampler pads chunk groups to this many chunks so one compiled shape serves a whole
    video. The wrapped module is used as is (its weights are shared, nothing is copied). ``artifacts``: where
    compiled kernels are loaded from before the first compile and saved to after each new one (None: not kept).
    """

    def __init__(self, unet: torch.nn.Module, *, frames: int, fixed_batch: int = 1, backend: str = "inductor",
                 artifacts: Optional[CompileArtifacts] = None, mode: Optional[str] = None):
        self.unet = unet
        self.frames = int(frames)
        self.fixed_batch = int(fixed_batch)
        self.mode = mode  # torch.compile's mode; CUDA_GRAPHS_MODE replays CUDA graphs (an experiment: bench only)
        self.fallback_reason: Optional[str] = None
        # see short_chunk_steps; off until its bits, time and VRAM are measured alone on a GPU (docs/performance.md)
        self.replay_short_chunks = False
        self.artifacts = artifacts
        if artifacts is not None:
            artifacts.load()
        from ..models.motion import TemporalAttention

        for module in unet.modules():  # explicit-score attention fuses well over 16 frames; same math as SDPA
            if isinstance(module, TemporalAttention):
                module.small_sequence_kernel = True
        self._full = torch.compile(unet.full_step, backend=backend, dynamic=False, mode=mode)
        self._cached = torch.compile(unet.cached_step, backend=backend, dynamic=False, mode=mode)

    def __getattr__(self, name: str) -> Any:  # config, dtype, device, max_frames ... of the wrapped model
        return getattr(self.unet, name)

    def __call__(self, sample: torch.Tensor, timestep, encoder_hidden_states=None, *, deepcache=None) -> torch.Tensor:
        if self.fallback_reason is not None or sample.shape[2] != self.frames:
            return self.unet(sample, timestep, encoder_hidden_states, deepcache=deepcache)
        self.unet._check_inputs(sample, encoder_hidden_states)
        try:
            if deepcache is not None and deepcache.cached is not None:
                with first_run_of(self.artifacts, "cached"):
                    return call_graph(self._cached, self.mode, sample, timestep, encoder_hidden_states,
                                      self.unet._checked_cache(deepcache, sample))
            # one graph for DeepCache on and off: the full step always returns the state a cached step needs
            with first_run_of(self.artifacts, "full"):
                eps, captured = call_graph(self._full, self.mode, sample, timestep, encoder_hidden_states,
                                           capture=True)
        except (torch.cuda.OutOfMemoryError, KeyboardInterrupt, ValueError):
            raise
        except Exception as exc:  # compiler missing or failing: run eagerly from now on
            self.fallback_reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            log.warning("torch.compile failed (%s); the U-Net runs uncompiled.", self.fallback_reason)
            return self.unet(sample, timestep, encoder_hidden_states, deepcache=deepcache)
        if deepcache is not None:
            deepcache.cached = captured
        return eps

    def short_chunk_steps(self) -> "ShortChunkSteps | CompiledUNet":
        """What runs a chunk group of another length than ``frames`` (a video's last chunk): this wrapper (the
        eager U-Net) or, with :attr:`replay_short_chunks` on, the eager U-Net with each step kind replayed as a CUDA
        graph after its first run (no compile, the same kernels). Keep it for one group only: it holds the graphs'
        memory."""
        if not self.replay_short_chunks or self.mode == CUDA_GRAPHS_MODE:
            return self
        return ShortChunkSteps(self.unet)


class ShortChunkSteps:
    """The U-Net's eager steps for one group of equal short chunks, called like the U-Net; each step kind (full or
    DeepCache, with or without audio) is a :class:`.cuda_graphs.ShapeGraph`: eager once, then replayed. A video's
    last chunk of 2-15 frames runs 20 steps of a few thousand small kernels each, which the host launches slower
    than the GPU runs them."""

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet
        self._graphs: dict[tuple, ShapeGraph] = {}

    def _graph(self, key: tuple, fn) -> ShapeGraph:
        if key not in self._graphs:  # the pool of the main chunks' activations is freed before a capture
            self._graphs[key] = ShapeGraph(fn, name=f"the U-Net's {key[0]} step on a short chunk",
                                           before_capture=torch.cuda.empty_cache)
        return self._graphs[key]

    def __call__(self, sample: torch.Tensor, timestep, encoder_hidden_states=None, *, deepcache=None) -> torch.Tensor:
        unet = self.unet
        unet._check_inputs(sample, encoder_hidden_states)
        t = torch.as_tensor(timestep, device=sample.device)
        audio = () if encoder_hidden_states is None else (encoder_hidden_states,)
        if deepcache is not None and deepcache.cached is not None:
            cached = unet._checked_cache(deepcache, sample)
            step = self._graph(("cached", bool(audio)),
                               lambda x, t, c, *a: unet.cached_step(x, t, a[0] if a else None, c))
            return step(sample, t, cached, *audio)
        capture = deepcache is not None
        step = self._graph(("full", bool(audio), capture),
                           lambda x, t, *a: unet.full_step(x, t, a[0] if a else None, capture=capture))
        eps, captured = step(sample, t, *audio)
        if deepcache is not None:
            deepcache.cached = captured
        return eps


def artifacts_for(unet: torch.nn.Module, *, device: torch.device | str, frames: int, fixed_batch: int,
                  cache_dir: Path | str | None = None) -> CompileArtifacts:
    """The artifact file of this U-Net's compile setup under ``cache_dir`` (default: :func:`default_cache_dir`)."""
    dtype = next(unet.parameters()).dtype
    config = getattr(unet, "config", {})
    key = setup_key(dict(config), device=device, dtype=dtype, frames=frames, batch=fixed_batch)
    return CompileArtifacts(cache_dir if cache_dir is not None else default_cache_dir(), key)


def maybe_compile(unet: torch.nn.Module, enabled: bool, *, device: torch.device | str, frames: int,
                  fixed_batch: int = 1, cache_dir: Path | str | None = None,
                  keep_kernels: bool | None = None, mode: Optional[str] = None) -> torch.nn.Module | CompiledUNet:
    """``unet`` wrapped in :class:`CompiledUNet` when ``enabled`` and possible; else ``unet`` (with a log line).

    With ``keep_kernels`` the compiled kernels are loaded from / saved to ``cache_dir`` (default: the user's cache
    folder, see :func:`.compile_cache.default_cache_dir`). None (default): kept unless $LATENTSYNC_COMPILE_CACHE
    is ``off``. On an H100 (torch 2.11, 256 px) a fresh process then spends 19 s + 1 s on its first full and
    DeepCache steps instead of 123 s + 11 s; see docs/performance.md."""
    if not enabled:
        return unet
    if isinstance(unet, CompiledUNet) or not _can_compile("U-Net", device):
        return unet
    artifacts = None
    if _keeps(keep_kernels):
        artifacts = artifacts_for(unet, device=device, frames=frames, fixed_batch=fixed_batch, cache_dir=cache_dir)
    return CompiledUNet(unet, frames=frames, fixed_batch=fixed_batch, artifacts=artifacts, mode=mode)


def _can_compile(what: str, device: torch.device | str) -> bool:
    reason = compile_unavailable_reason(device)
    if reason is not None:
        log.warning("Not compiling the %s: %s. Running uncompiled.", what, reason)
    return reason is None


def _keeps(keep_kernels: bool | None) -> bool:
    """An explicit choice, else the user's setting ($LATENTSYNC_COMPILE_CACHE)."""
    return kernels_kept() if keep_kernels is None else keep_kernels


def maybe_compile_vae(vae: Any, enabled: bool, *, device: torch.device | str, cache_dir: Path | str | None = None,
                      keep_kernels: bool | None = None, mode: Optional[str] = None) -> Any:
    """Compile a :class:`.vae.DiffusersVAE`'s encoder and decoder in place when ``enabled`` and possible (kernels
    kept as :func:`maybe_compile` keeps the U-Net's, files named ``vae-*``); returns ``vae``. Other VAEs
    (ComfyUI's, in the nodes) and a VAE already compiled are left as they are."""
    if not enabled or not hasattr(vae, "compile") or getattr(vae, "compiled", True) or not _can_compile("VAE", device):
        return vae
    artifacts = None
    if _keeps(keep_kernels):
        artifacts = vae_artifacts_for(vae.vae, device=device, cache_dir=cache_dir)
    vae.compile(artifacts=artifacts, mode=mode)
    return vae


def vae_artifacts_for(module: torch.nn.Module, *, device: torch.device | str,
                      cache_dir: Path | str | None = None) -> CompileArtifacts:
    """The kept-kernel files of a diffusers VAE module's compile setup (its public config, class and diffusers
    version; the input shapes name the graphs)."""
    # diffusers' private config entries (_use_default_values: a list made from a set) vary between processes
    public = {k: v for k, v in dict(getattr(module, "config", {})).items() if not str(k).startswith("_")}
    config = {"vae": public, "class": type(module).__name__, "diffusers": package_version("diffusers")}
    dtype = next(module.parameters()).dtype
    key = setup_key(config, device=device, dtype=dtype, frames=1, batch=0, own_code=False)
    return CompileArtifacts(cache_dir if cache_dir is not None else default_cache_dir(), key, kind="vae")
