"""The VAE behind a small interface: posterior moments out, pixels back.

The pipeline needs the posterior (mean, logvar) rather than one sample so that it can draw the samples itself in
upstream's random-number order. Latents crossing this interface are unscaled (as ComfyUI's LATENTs). The U-Net
works on scaled latents; :func:`to_unet_latents` and :func:`to_vae_latents` are the one place where the units
change (LatentSync's 0.18215, no shift).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import torch

from ..configs import VAE_SCALING_FACTOR, VAE_SHIFT_FACTOR
from .compile_cache import first_run_of
from .compiled import call_graph

log = logging.getLogger(__name__)


def to_unet_latents(z: torch.Tensor) -> torch.Tensor:
    """VAE (unscaled, LATENT) units -> the U-Net's scaled units."""
    return (z - VAE_SHIFT_FACTOR) * VAE_SCALING_FACTOR


def to_vae_latents(z: torch.Tensor) -> torch.Tensor:
    """The U-Net's scaled units -> VAE (unscaled, LATENT) units."""
    return z / VAE_SCALING_FACTOR + VAE_SHIFT_FACTOR


@runtime_checkable
class LatentVAE(Protocol):
    """What the pipeline asks of a VAE (a diffusers ``AutoencoderKL`` here, ComfyUI's VAE in the nodes)."""

    device: torch.device
    dtype: torch.dtype

    def encode_moments(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,3,H,W) in [-1,1] -> posterior (mean, logvar), each (N,4,H/8,W/8), unscaled."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled (N,4,h,w) latents -> (N,3,8h,8w) pixels in about [-1,1]."""


class DiffusersVAE:
    """Adapter for a diffusers ``AutoencoderKL`` (sd-vae-ft-mse in upstream).

    Frames go through in batches of about ``pixel_budget`` pixels, at least ``min_batch`` faces (4 faces at 256 px,
    2 at 512 px): the VAE's full-resolution activations, not the U-Net, set the peak VRAM. On an H100 (fp16) 8 faces
    at 256 px need 1.0 GiB beyond the weights and 4 faces 0.5 GiB, for 1.2x the time per face (encode 1.67 -> 1.98
    ms, decode 3.87 -> 4.63 ms; ``bench/vae_speed.py``). At 512 px the VAE is a third of the run, and 2 faces per
    call already fit an 8 GB card (7.2 GiB reserved); on an H200 they took 17.3 -> 7.5 GiB against 16 faces for +5 %
    time.
    """

    def __init__(self, vae: torch.nn.Module, *, batch_size: int | None = None, pixel_budget: int = 4 * 256 * 256,
                 min_batch: int = 2):
        self.vae = vae
        self.batch_size = batch_size
        self.pixel_budget = pixel_budget
        self.min_batch = min_batch
        self._graphs: Optional[dict[str, Callable]] = None  # compiled encoder / decoder (see compile)
        self.fallback_reason: Optional[str] = None
        self.artifacts: Any = None  # a compile_cache.CompileArtifacts: compiled kernels kept across processes
        self.mode: Optional[str] = None  # torch.compile's mode (see compile)

    def compile(self, *, backend: str = "inductor", artifacts: Any = None, mode: Optional[str] = None) -> None:
        """Run the encoder and decoder through ``torch.compile`` with static shapes from now on (again: no-op).

        Every call then gets a full batch: a short last batch is padded with copies of its last item, whose results
        are dropped, so one graph per resolution serves a whole video. On an H100 (fp16) this halves the time per
        face (256 px: encode 1.95 -> 0.96 ms, decode 4.29 -> 1.94 ms; 512 px: 9.0 -> 4.4, 20.1 -> 9.0 ms) for about
        30 s of compiling per resolution. ``artifacts`` (:class:`.compile_cache.CompileArtifacts`) keeps the kernels
        for later processes: loaded now, saved after each graph's first run. If compiling fails, the VAE runs
        eagerly from then on and :attr:`fallback_reason` says why. ``mode``: torch.compile's (``reduce-overhead``
        replays CUDA graphs; an experiment, bench only).
        """
        if self._graphs is not None or self.fallback_reason is not None:
            return
        self.artifacts = artifacts
        if artifacts is not None:
            artifacts.load()
        self.mode = mode
        self._graphs = {name: torch.compile(getattr(self.vae, name), backend=backend, dynamic=False, mode=mode)
                        for name in ("encoder", "decoder")}

    @property
    def compiled(self) -> bool:
        """True while the encoder and decoder run compiled (after :meth:`compile`, unless it fell back)."""
        return self._graphs is not None

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The compiled encoder or decoder on ``x``; the plain module once compiling has failed."""
        if self._graphs is not None:
            try:
                with first_run_of(self.artifacts, f"{name}-{'x'.join(map(str, x.shape))}"):  # a graph per part, shape
                    return call_graph(self._graphs[name], self.mode, x)
            except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:  # compiler missing or failing: eager from now on
                self.fallback_reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                log.warning("torch.compile failed for the VAE (%s); it runs uncompiled.", self.fallback_reason)
                self._graphs = None
        return getattr(self.vae, name)(x)

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._graphs is None:
            dist = self.vae.encode(x).latent_dist
            return dist.mean, dist.logvar  # diffusers clamps it to [-30, 20], as its sample() uses
        h = self._run("encoder", x)
        if getattr(self.vae, "quant_conv", None) is not None:
            h = self.vae.quant_conv(h)
        mean, logvar = torch.chunk(h, 2, dim=1)  # as diffusers' DiagonalGaussianDistribution
        return mean, logvar.clamp(-30.0, 20.0)

    def _pixels(self, z: torch.Tensor) -> torch.Tensor:
        if self._graphs is None:
            return self.vae.decode(z).sample
        if getattr(self.vae, "post_quant_conv", None) is not None:
            z = self.vae.post_quant_conv(z)
        return self._run("decoder", z)

    def _full_batch(self, fn: Callable[[torch.Tensor], Any], part: torch.Tensor, batch: int) -> Any:
        """``fn(part)`` on the VAE's device, dtype and layout (its convolutions round differently in another, so every
        batch gets the same); compiled, a short ``part`` is padded to ``batch`` items and the results cut back."""
        from ..models.layers import memory_format_of

        layout = memory_format_of(self.vae.encoder.conv_in.weight)  # channels-last when the module was made so
        part = part.to(self.device, self.dtype).contiguous(memory_format=layout)
        n = part.shape[0]
        if self._graphs is None or n == batch:
            return fn(part)
        out = fn(torch.cat([part, part[-1:].expand(batch - n, *part.shape[1:])]))
        return tuple(o[:n] for o in out) if isinstance(out, tuple) else out[:n]

    def _batch(self, pixels_per_item: int) -> int:
        if self.batch_size is not None:
            return max(1, self.batch_size)
        return max(1, self.min_batch, self.pixel_budget // max(1, pixels_per_item))

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def warm_up(self, resolution: int) -> None:
        """Encode and decode one full batch of ``resolution`` px faces: compiled, this compiles (or loads) both
        graphs ahead of a timed or interactive run."""
        faces = torch.zeros(self._batch(resolution * resolution), 3, resolution, resolution)
        self.decode(self.encode_moments(faces)[0])

    @torch.no_grad()
    def encode_moments(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means, logvars = [], []
        batch = self._batch(pixels.shape[-1] * pixels.shape[-2])
        for part in pixels.split(batch):
            mean, logvar = self._full_batch(self._moments, part, batch)
            means.append(mean)
            logvars.append(logvar)
        return torch.cat(means), torch.cat(logvars)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        batch = self._batch(latents.shape[-1] * latents.shape[-2] * 64)
        return torch.cat([self._full_batch(self._pixels, z, batch) for z in latents.split(batch)])


def load_diffusers_vae(path: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> DiffusersVAE:
    """Load sd-vae-ft-mse (a diffusers folder, or a single diffusers-format .safetensors file) through diffusers."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as exc:  # the nodes use ComfyUI's VAE instead; only the standalone CLI needs diffusers
        raise ImportError(
            "The standalone pipeline loads the VAE with diffusers: pip install diffusers "
            "(inside ComfyUI the core VAE is used instead)."
        ) from exc
    import os

    if os.path.isdir(path):
        # low_cpu_mem_usage=False: the default asks for `accelerate` and warns on every load without it.
        vae = AutoencoderKL.from_pretrained(path, torch_dtype=dtype, low_cpu_mem_usage=False)
    else:
        from ..models.checkpoint import read_checkpoint

        state = read_checkpoint(path)
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=256,
        )
        missing, unexpected = vae.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path} is not a diffusers-format sd-vae-ft-mse file: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})."
            )
        # torch's own cast: diffusers' override warns about fp32-only modules on every call, even with none.
        vae = torch.nn.Module.to(vae, dtype=dtype)
    return DiffusersVAE(vae.to(device).eval())
