"""The end-to-end generation on aligned faces: faces + per-frame audio windows in, lip-synced faces out.

``generate_faces`` is the one function both the command line and the nodes build on (the nodes call its three
stages — :func:`encode_faces`, :class:`LipsyncSampler`, :func:`decode_faces` — as separate graph nodes).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .sampler import EncodedFaces, LipsyncSampler, ProgressCallback, SamplerOptions, decode_faces, encode_faces


@torch.no_grad()
def generate_faces(
    unet: torch.nn.Module,
    vae,
    faces: torch.Tensor,
    audio_windows: Optional[torch.Tensor],
    mask: torch.Tensor,
    options: SamplerOptions,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    sampler: Optional[LipsyncSampler] = None,
    skip_chunk: Optional[Callable[[int, int], bool]] = None,
    callback: Optional[ProgressCallback] = None,
    steps_total: Optional[int] = None,
    vae_batch: int = 16,
) -> torch.Tensor:
    """Aligned uint8 faces (F,3,R,R) -> generated faces in [-1,1] (F,3,R,R), mouth repainted, rest = reference.

    ``sampler`` carries the random state across calls (streaming); without one, a fresh sampler is made, which is
    upstream's single call. Frames are processed in ``options.chunk_frames`` chunks; ``callback`` and
    ``steps_total`` are the sampler's progress reporting; ``vae_batch`` faces go through the VAE per call.
    """
    if audio_windows is not None and audio_windows.shape[0] != faces.shape[0]:
        raise ValueError(
            f"audio windows ({audio_windows.shape[0]}) and faces ({faces.shape[0]}) must have one entry per frame"
        )
    if faces.shape[-1] != mask.shape[-1]:
        raise ValueError(f"faces are {faces.shape[-1]} px but the mask is {mask.shape[-1]} px")
    latent_hw = (faces.shape[-2] // 8, faces.shape[-1] // 8)
    if sampler is None:
        # Upstream draws the initial noise before any VAE encode; the sampler does so on construction.
        sampler = LipsyncSampler(unet, options, latent_hw=latent_hw, device=device, dtype=dtype)
    encoded: EncodedFaces = encode_faces(vae, faces, mask, batch_size=vae_batch)
    latents = sampler.sample(encoded, audio_windows, skip_chunk=skip_chunk, callback=callback, steps_total=steps_total)
    return decode_faces(vae, latents, faces, mask, batch_size=vae_batch)
