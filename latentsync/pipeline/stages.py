"""The stages of one lip-sync, window by window and chunk by chunk: the one API that the ComfyUI nodes, the
streaming file runner and the command line all call.

::

    video frames ─(face.track: detect, track)─ face_matrices ─> alignment matrices (F, 2, 3), found flags
    frames + matrices ─────────────────────── align_faces ─> aligned faces uint8 (F, 3, R, R)
    aligned faces + mask ───────────────────────── encode ─> EncodedFaces (posterior moments, VAE units)
    audio ─(audio.features)─> whisper rows ─ audio_windows ─> per-frame windows (F, S, D)
    EncodedFaces + windows + VideoPlan ──────────── sample ─> latents (VAE units), noise drawn per chunk from the seed
    latents + reference faces ──────────────────── decode ─> faces [-1, 1] (mouth new, the rest the reference)
    frames + faces + matrices ──────────────────composite ─> frames uint8 (pixels outside the paste unchanged)

A :class:`VideoPlan` fixes what makes a video's result: its frame count, the sampler settings with the seed
resolved, and the latent size. Its chunks (``options.chunk_frames`` frames each, the last one shorter) are the unit
of work: :func:`generate_chunks` computes any range of them on its own, in any process, and gives exactly the
frames a one-shot run over the whole plan gives (the sampler fast-forwards the random state past the earlier
chunks; exact with one chunk per U-Net call). That is what sharding a video over several devices builds on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Optional, Union

import torch

from ..face.align import warp_faces as align_faces
from ..face.restore import composite
from .oom import MemoryPlan, free_cached_memory, run_shrinking
from .sampler import (
    EncodedFaces,
    LipsyncSampler,
    ProgressCallback,
    SamplerOptions,
    chunk_bounds,
    decode_vae_latents,
    encode_faces,
)

__all__ = [
    "VideoPlan", "plan_video", "face_matrices", "align_faces", "encode", "audio_windows", "silent_mask", "frames_to_paste",
    "skip_test", "new_sampler", "sample_fitting", "decode", "composite", "generate_chunks",
]

Fps = Union[Fraction, float, int]

encode = encode_faces
"""``encode(vae, faces uint8 (F,3,R,R), mask (R,R), batch_size=16) -> EncodedFaces`` (posterior moments)."""

decode = decode_vae_latents
"""``decode(vae, latents (F,4,h,w) in VAE units, ref_faces, mask, batch_size=16) -> faces [-1,1] (F,3,R,R)``."""


@dataclass(frozen=True)
class VideoPlan:
    """What fixes one video's generated frames: frame count, sampler settings (seed resolved), latent size."""

    num_frames: int
    options: SamplerOptions
    latent_hw: tuple[int, int]

    @property
    def seed(self) -> int:
        """The seed every chunk's noise derives from."""
        return int(self.options.seed)

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """Frame ranges ``[start, stop)`` of the chunks, in order (upstream's chunking)."""
        return chunk_bounds(self.num_frames, self.options.chunk_frames)

    def frames_of(self, first_chunk: int, stop_chunk: int) -> tuple[int, int]:
        """Frame range ``[start, stop)`` covered by chunks ``[first_chunk, stop_chunk)``."""
        chunks = self.chunks
        if not 0 <= first_chunk < stop_chunk <= len(chunks):
            raise ValueError(f"chunks [{first_chunk}, {stop_chunk}) are outside this plan's {len(chunks)} chunks")
        return chunks[first_chunk][0], chunks[stop_chunk - 1][1]


def face_matrices(points: torch.Tensor, resets: torch.Tensor, resolution: int, *, smooth: bool = True) -> torch.Tensor:
    """Tracked alignment points (F,3,2) -> matrices (F,2,3): upstream's smoothing across frames, restarted at the
    cuts (``resets``); ``smooth=False`` restarts it at every frame, i.e. each frame's own alignment."""
    from ..face.align import AlignmentSmoother, matrices_from_points

    resets = torch.as_tensor(resets, dtype=torch.bool)
    if not smooth:
        resets = torch.ones_like(resets)
    return matrices_from_points(torch.as_tensor(points, dtype=torch.float32), resolution, AlignmentSmoother(), resets)


def plan_video(num_frames: int, options: SamplerOptions, resolution: int) -> VideoPlan:
    """The plan of a ``num_frames``-frame video at ``resolution`` px faces; a seed of None is drawn here, once."""
    options.validate()
    if options.seed is None:
        options = dataclasses.replace(options, seed=int(torch.randint(0, 2**62, ()).item()))
    return VideoPlan(int(num_frames), options, (resolution // 8, resolution // 8))


def audio_windows(features: torch.Tensor, num_frames: int, fps: Fps, *, start_frame: int = 0,
                  timestamps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Whisper rows (N, L+1, D) -> the audio window of each of ``num_frames`` frames (F, S, D).

    Frames are evenly spaced at ``fps`` from ``start_frame``; ``timestamps`` (seconds, variable frame rate) place
    them at their real times instead.
    """
    from ..audio.windows import frame_window_indices, frame_window_indices_at, frame_windows

    if timestamps is not None:
        indices = frame_window_indices_at(features.shape[0], timestamps)
    else:
        indices = frame_window_indices(features.shape[0], num_frames, float(fps), start_frame=int(start_frame))
    return frame_windows(features, indices)


def silent_mask(wav16k: torch.Tensor, num_frames: int, fps: Fps, *, start_frame: int = 0) -> torch.Tensor:
    """(num_frames,) bool: frames ``start_frame ..`` during which the 16 kHz audio is a pause."""
    from ..audio.silence import silent_frames

    return silent_frames(wav16k, start_frame + num_frames, float(fps))[start_frame:]


def frames_to_paste(num_frames: int, found: Optional[torch.Tensor] = None,
                    silent: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(F,) bool: frames whose generated face is pasted back (a face was found and, if given, the audio speaks)."""
    apply = torch.ones(num_frames, dtype=torch.bool)
    if found is not None and len(found) == num_frames:
        apply &= torch.as_tensor(found, dtype=torch.bool).cpu()
    if silent is not None:
        apply &= ~torch.as_tensor(silent, dtype=torch.bool).cpu()
    return apply


def skip_test(apply: torch.Tensor) -> Optional[Callable[[int, int], bool]]:
    """The sampler's ``skip_chunk``: true for chunks (video frame ranges) in which no frame is pasted back; None
    when every frame is (nothing to test)."""
    if bool(apply.all()):
        return None
    return lambda start, stop: not bool(apply[start:stop].any())


def new_sampler(unet: torch.nn.Module, plan: VideoPlan, *, device: torch.device | str, dtype: torch.dtype,
                start_frame: int = 0) -> LipsyncSampler:
    """A sampler for ``plan`` positioned at ``start_frame`` (a chunk boundary): its noise is that of the one-shot
    run at that frame."""
    return LipsyncSampler(unet, plan.options, latent_hw=plan.latent_hw, device=device, dtype=dtype,
                          start_frame=start_frame)


def sample_fitting(sampler: LipsyncSampler, encoded: EncodedFaces, windows: Optional[torch.Tensor], *,
                   skip: Optional[Callable[[int, int], bool]] = None, callback: Optional[ProgressCallback] = None,
                   after_oom: Optional[Callable[[], None]] = None,
                   out_device: Optional[torch.device | str] = None) -> torch.Tensor:
    """Denoise every frame of ``encoded`` -> latents in VAE units (F, 4, h, w).

    Works in groups of ``batch_chunks`` chunks; a group that runs out of memory is redone with fewer chunks per
    U-Net call from the same random state (same result), groups already done are kept. Each group's latents move
    to ``out_device`` as they are done; ``after_oom`` frees the caller's caches before a retry.
    """
    opts = sampler.options
    plan = MemoryPlan(batch_chunks=opts.batch_chunks, vae_batch=1)
    total = sampler.steps_done + sampler.steps_total(encoded.num_frames)
    out = []
    start = 0
    while start < encoded.num_frames:
        stop = min(start + opts.chunk_frames * plan.batch_chunks, encoded.num_frames)
        state = sampler.snapshot()

        def attempt(now: MemoryPlan, a: int = start, b: int = stop) -> torch.Tensor:
            opts.batch_chunks = now.batch_chunks
            part = None if windows is None else windows[a:b]
            return sampler.sample_vae_latents(encoded.slice(a, b), part, skip_chunk=skip, callback=callback,
                                              steps_total=total)

        def undo(state: tuple = state) -> None:
            sampler.restore(state)
            free_cached_memory(sampler.device)
            if after_oom is not None:
                after_oom()

        z = run_shrinking(attempt, plan, where=f"frames {start}-{stop - 1}", before_retry=undo,
                          on_shrink=lambda line: None)
        out.append(z if out_device is None else z.to(out_device))
        start = stop
    return torch.cat(out)


@torch.no_grad()
def generate_chunks(
    unet: torch.nn.Module,
    vae,
    plan: VideoPlan,
    faces: torch.Tensor,
    windows: Optional[torch.Tensor],
    mask: torch.Tensor,
    *,
    first_chunk: int,
    stop_chunk: int,
    device: torch.device | str,
    dtype: torch.dtype,
    paste: Optional[torch.Tensor] = None,
    callback: Optional[ProgressCallback] = None,
    vae_batch: int = 16,
    sampler: Optional[LipsyncSampler] = None,
) -> torch.Tensor:
    """Compute chunks ``[first_chunk, stop_chunk)`` of ``plan`` -> generated faces in [-1,1] of their frames.

    ``faces`` (uint8 (n,3,R,R)) and ``windows`` ((n,S,D) or None) hold only those chunks' frames,
    ``n = plan.frames_of(first_chunk, stop_chunk)`` length; ``paste`` ((n,) bool, optional) marks frames that will
    be pasted back (chunks with none are not denoised). The noise is derived from the plan's seed, so the result
    equals, bit for bit, the same frames of a one-shot run over the whole plan, whichever process or order the
    ranges are computed in. The one call for sharding a video: split ``range(len(plan.chunks))``, run each part
    anywhere, concatenate in order.

    Exact with one chunk per U-Net call (``options.batch_chunks == 1``, the default): chunks denoised together
    share a batch, whose float rounding differs from a chunk's own (measured on the CPU: up to 1e-4 in the faces).
    The random draws are the same either way. ``sampler``: one of this plan at or before the range's first frame,
    moved on to it (a worker that keeps it across its ranges fast-forwards over the gaps only, not the whole video).
    """
    start, stop = plan.frames_of(first_chunk, stop_chunk)
    if faces.shape[0] != stop - start or (windows is not None and windows.shape[0] != stop - start):
        raise ValueError(f"chunks [{first_chunk}, {stop_chunk}) cover frames {start}..{stop - 1} ({stop - start}); "
                         f"got {faces.shape[0]} faces and {None if windows is None else windows.shape[0]} windows")
    if sampler is None:
        sampler = new_sampler(unet, plan, device=device, dtype=dtype, start_frame=start)
    else:
        sampler.skip_to(start)
    skip = None
    if paste is not None:
        test = skip_test(torch.as_tensor(paste, dtype=torch.bool).cpu())
        if test is not None:
            skip = lambda a, b: test(a - start, b - start)  # noqa: E731 - the sampler passes video frame indices
    encoded = encode(vae, faces, mask, batch_size=vae_batch)
    latents = sampler.sample_vae_latents(encoded, windows, skip_chunk=skip, callback=callback)
    return decode(vae, latents, faces, mask, batch_size=vae_batch)
