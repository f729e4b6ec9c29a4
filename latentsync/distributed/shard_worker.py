"""One device's share of a sharded video: the U-Net and the VAE loaded once, and any window of chunks generated on
request (the body of a Ray actor; it holds no Ray code, so it also runs in-process).

A window arrives as plain arrays (uint8 aligned faces, audio windows, paste flags) and leaves as the generated faces
in [-1, 1]: the same computation the streaming runner does for that window (encode, sample from the plan's per-chunk
noise, decode), so the gathered frames equal the single-device run's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """'fp32' / 'fp16' / 'bf16' for a torch dtype (what crosses to a worker)."""
    return {v: k for k, v in DTYPES.items()}[dtype]


def to_wire(x: torch.Tensor) -> np.ndarray:
    """A CPU numpy array of ``x`` for the object store (numpy has no bfloat16: widened to float32, exactly)."""
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


@dataclass
class WindowResult:
    """A generated window and what it cost on the worker."""

    faces: np.ndarray  # (n, 3, R, R) in [-1, 1], the VAE's dtype (bf16 widened to float32)
    compute_s: float  # encode + sample + decode on the device
    fetch_s: float  # the inputs fetched from the object store into this process
    worker: str


class ChunkWorker:
    """The U-Net and VAE of one model on one device; :meth:`generate` computes one window of a video plan."""

    def __init__(self, files: Mapping[str, str], *, version: Optional[str], device: str, dtype: str,
                 compile_shape: Optional[tuple[int, int]] = None):
        from ..models.unet import load_unet
        from ..pipeline.loading import unet_spec
        from ..pipeline.vae import load_diffusers_vae

        started = time.perf_counter()
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dtype = DTYPES[dtype]
        self.name = f"{device} (pid {os.getpid()})"
        spec = unet_spec(files["unet"], version)
        unet = load_unet(files["unet"], spec.config, device=self.device, dtype=self.dtype).eval()
        if compile_shape is not None:
            from ..pipeline.compiled import maybe_compile

            unet = maybe_compile(unet, True, device=self.device, frames=compile_shape[0],
                                 fixed_batch=compile_shape[1])
        self.unet = unet
        self.vae = load_diffusers_vae(files["vae"], device=self.device, dtype=self.dtype)
        if compile_shape is not None:
            from ..pipeline.compiled import maybe_compile_vae

            maybe_compile_vae(self.vae, True, device=self.device)
        self._sampler: Optional[tuple[Any, Any]] = None  # (plan, sampler): the video's windows come in order
        self.load_s = time.perf_counter() - started

    def ready(self) -> tuple[str, float]:
        """The worker's name and its model load time (seconds); waiting on it waits for the load."""
        return self.name, self.load_s

    @torch.no_grad()
    def generate(self, plan: Any, first_chunk: int, stop_chunk: int, inputs: list, vae_batch: int) -> WindowResult:
        """Chunks ``[first_chunk, stop_chunk)`` of ``plan``; ``inputs`` = [faces, windows, mask, paste] (arrays or
        object refs, fetched here so the fetch is timed)."""
        from ..pipeline import stages

        started = time.perf_counter()
        if any(_is_ref(x) for x in inputs):
            import ray

            inputs = [ray.get(x) if _is_ref(x) else x for x in inputs]
        faces, windows, mask, paste = (None if x is None else torch.from_numpy(np.array(x)) for x in inputs)
        faces = faces.to(self.device)  # on the device, as the runner aligns them (mask, windows: CPU)
        fetched = time.perf_counter()
        sampler = self._sampler_for(plan, first_chunk)
        self._sampler = None  # kept again only once the window is done (a failure leaves its state half-way)
        out = stages.generate_chunks(self.unet, self.vae, plan, faces, windows, mask, first_chunk=first_chunk,
                                     stop_chunk=stop_chunk, device=self.device, dtype=self.dtype, paste=paste,
                                     vae_batch=vae_batch, sampler=sampler)
        self._sampler = (plan, sampler)
        result = to_wire(out)
        return WindowResult(result, time.perf_counter() - fetched, fetched - started, self.name)


    def _sampler_for(self, plan: Any, first_chunk: int) -> Any:
        """The sampler kept from this video's earlier windows when it has not passed ``first_chunk`` (it then only
        skips the chunks other workers did), else a new one at that chunk."""
        from ..pipeline import stages

        start = first_chunk * plan.options.chunk_frames
        kept = self._sampler
        if kept is not None and kept[0] == plan and kept[1].frames_done <= start:
            return kept[1]
        return stages.new_sampler(self.unet, plan, device=self.device, dtype=self.dtype, start_frame=start)


def _is_ref(x: Any) -> bool:
    return type(x).__name__ == "ObjectRef"
