"""Chunked, classifier-free-guided DDIM denoising of the mouth region, in upstream's random-number order.

Upstream draws, from one generator: the initial noise frame (shared by every frame of the video), then per
16-frame chunk a posterior sample of the masked-face latents and one of the reference-face latents (DDIM with
eta 0 draws nothing more). The encoder moments are computed beforehand (possibly by another node); the draws
happen here, in that order, so the split node graph and the streaming CLI give the same numbers as upstream's
single call.

Every chunk draws the same shapes whatever its content, so the random state at the start of chunk k is known
without computing chunks 0..k-1: a sampler made with ``start_frame`` draws the initial noise and then draws and
discards exactly the earlier chunks' posterior samples (same shapes, dtype, device and order). Any chunk can thus
be computed alone, in any process, and equal the one-shot run bit for bit (see ``stages.generate_chunks``).

Latent units: the U-Net works on scaled latents (``vae.to_unet_latents``); everything crossing the VAE or a
ComfyUI LATENT is unscaled. ``sample`` returns U-Net units (upstream's final latents); ``sample_vae_latents`` the
same in VAE units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Optional

import torch

from ..configs import (
    DEEPCACHE_INTERVAL,
    DEFAULT_DEEPCACHE,
    DEFAULT_GUIDANCE,
    DEFAULT_SEED,
    DEFAULT_STEPS,
    LATENT_CHANNELS,
    NUM_FRAMES_PER_CHUNK,
)
from .ddim import DDIMSchedule
from .vae import to_unet_latents, to_vae_latents

ProgressCallback = Callable[[int, int], None]
"""Called as ``callback(steps_done, steps_total)`` after every U-Net step; may raise to cancel."""


@dataclass
class SamplerOptions:
    """Sampling settings; defaults are upstream's inference.sh / gradio app (DeepCache on), the same as the CLI's and
    the nodes' (latentsync/options.py)."""

    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: Optional[int] = DEFAULT_SEED  # None draws a random seed
    deepcache: bool = DEFAULT_DEEPCACHE
    deepcache_interval: int = DEEPCACHE_INTERVAL
    chunk_frames: int = NUM_FRAMES_PER_CHUNK
    noise_device: Optional[str] = None  # None: the execution device, as upstream; "cpu": same noise on any device/dtype
    posterior: str = "sample"  # "sample" (upstream) or "mean"
    batch_chunks: int = 1  # chunks denoised together in one U-Net call (same result, better GPU use)

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range (NaN and infinities included)."""
        from ..option_checks import check_number

        check_number(self.steps, "steps")
        check_number(self.guidance_scale, "guidance", "guidance_scale")
        if self.seed is not None:
            check_number(self.seed, "seed")
        if not 1 <= self.chunk_frames <= 24:
            raise ValueError(f"chunk_frames must be within 1..24 (motion-module positions), got {self.chunk_frames}")
        if self.deepcache_interval < 1:
            raise ValueError(f"deepcache_interval must be >= 1, got {self.deepcache_interval}")
        if not 1 <= self.batch_chunks <= 16:
            raise ValueError(f"batch_chunks must be within 1..16, got {self.batch_chunks}")
        if self.posterior not in ("sample", "mean"):
            raise ValueError(f"posterior must be 'sample' or 'mean', got {self.posterior!r}")


@dataclass
class EncodedFaces:
    """VAE posterior moments of the masked and reference faces (unscaled) and the latent-size mask."""

    masked_mean: torch.Tensor  # (F, 4, h, w)
    masked_logvar: torch.Tensor
    ref_mean: torch.Tensor
    ref_logvar: torch.Tensor
    mask_latent: torch.Tensor  # (1, h, w): 1 keep, 0 regenerate

    @property
    def num_frames(self) -> int:
        return self.masked_mean.shape[0]

    def slice(self, start: int, stop: int) -> "EncodedFaces":
        return EncodedFaces(
            self.masked_mean[start:stop], self.masked_logvar[start:stop],
            self.ref_mean[start:stop], self.ref_logvar[start:stop], self.mask_latent,
        )


def chunk_bounds(num_frames: int, chunk_frames: int = NUM_FRAMES_PER_CHUNK) -> list[tuple[int, int]]:
    """Upstream's chunking: consecutive ``chunk_frames``-frame chunks, the last one possibly shorter."""
    return [(s, min(s + chunk_frames, num_frames)) for s in range(0, num_frames, chunk_frames)]


class LipsyncSampler:
    """Denoises chunks in order with one generator; create once per video (its state spans the whole video).

    Feeding the video in several calls of whole chunks gives exactly the one-call result, which is what the
    streaming path relies on. ``start_frame`` (a multiple of ``options.chunk_frames``) starts at that frame of
    the video: the earlier chunks' draws are taken and discarded, so the result equals those frames of the
    one-shot run.
    """

    interleave_tail = True  # the short tail chunk's steps between the last full group's: same bits, less waiting

    def __init__(
        self,
        unet: torch.nn.Module,
        options: SamplerOptions,
        *,
        latent_hw: tuple[int, int],
        device: torch.device | str,
        dtype: torch.dtype,
        start_frame: int = 0,
    ):
        options.validate()
        if start_frame < 0 or start_frame % options.chunk_frames:
            raise ValueError(f"start_frame must be a chunk boundary (a multiple of chunk_frames = "
                             f"{options.chunk_frames}), got {start_frame}")
        self.unet = unet
        self.options = options
        self.device = torch.device(device)
        self.dtype = dtype
        self.schedule = DDIMSchedule(options.steps)
        # The timesteps go to the device once: a tensor made from a number per step is a blocking copy, which would
        # make the host wait for every step to finish before queueing the next one. One 0-d tensor each (no views).
        self._timesteps_on_device = [t.clone() for t in self.schedule.timesteps.to(self.device)]
        noise_device = torch.device(options.noise_device) if options.noise_device else self.device
        seed = options.seed if options.seed is not None else int(torch.randint(0, 2**62, ()).item())
        self.seed = seed
        self.generator = torch.Generator(noise_device).manual_seed(seed)
        self._noise_device = noise_device
        h, w = latent_hw
        # One noise frame repeated over every frame of the video (upstream quirk 9); it is the first draw.
        self.noise = self._randn((1, LATENT_CHANNELS, 1, h, w), dtype)
        self.frames_done = start_frame
        self.steps_done = 0  # U-Net steps over every call, so progress runs on across streaming windows
        # Earlier chunks whose posterior draws are still to be discarded (done on the first ``sample``, when the
        # moments' dtype, which the draws use, is known).
        self._chunks_to_skip = start_frame // options.chunk_frames if options.posterior == "sample" else 0

    def _randn(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        # On the execution device the draw is in the model's dtype, as upstream draws it; on the CPU it is float32
        # and cast, so a seed gives the same noise whatever the device and dtype.
        draw = torch.float32 if self._noise_device.type == "cpu" else dtype
        x = torch.randn(shape, generator=self.generator, device=self._noise_device, dtype=draw)
        return x.to(self.device, dtype)

    def _fast_forward(self, dtype: torch.dtype, latent_hw: tuple[int, int]) -> None:
        """Draw and discard the posterior samples of the chunks before ``start_frame``, as ``_posterior`` draws
        them (masked then reference, ``chunk_frames`` frames each): cheap, and exact on every generator."""
        draw = torch.float32 if self._noise_device.type == "cpu" else dtype
        shape = (self.options.chunk_frames, LATENT_CHANNELS, *latent_hw)
        for _ in range(2 * self._chunks_to_skip):
            torch.randn(shape, generator=self.generator, device=self._noise_device, dtype=draw)
        self._chunks_to_skip = 0

    def _posterior(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        mean = mean.to(self.device)
        if self.options.posterior == "mean":
            return mean
        std = torch.exp(0.5 * logvar.to(self.device))
        return mean + std * self._randn(tuple(mean.shape), mean.dtype)

    def skip_to(self, frame: int) -> None:
        """Move on to ``frame`` (a chunk boundary, not before the frames done) as if the chunks in between had been
        sampled: their draws are taken and discarded on the next ``sample``, so a sampler kept across ranges of one
        video only fast-forwards over the gaps."""
        if frame < self.frames_done or frame % self.options.chunk_frames:
            raise ValueError(f"skip_to({frame}): not a chunk boundary at or after frame {self.frames_done}")
        if self.options.posterior == "sample":
            self._chunks_to_skip += (frame - self.frames_done) // self.options.chunk_frames
        self.frames_done = frame

    def snapshot(self) -> tuple:
        """The random state and progress counters, for :meth:`restore` (retrying a window after running out of
        memory gives the result the first attempt would have given)."""
        return self.generator.get_state(), self.frames_done, self.steps_done, self._chunks_to_skip

    def restore(self, state: tuple) -> None:
        """Go back to a :meth:`snapshot`."""
        rng, self.frames_done, self.steps_done, self._chunks_to_skip = state
        self.generator.set_state(rng)

    def steps_total(self, num_frames: int) -> int:
        return len(chunk_bounds(num_frames, self.options.chunk_frames)) * self.options.steps

    @torch.no_grad()
    def sample(
        self,
        encoded: EncodedFaces,
        audio_windows: Optional[torch.Tensor],
        *,
        skip_chunk: Optional[Callable[[int, int], bool]] = None,
        callback: Optional[ProgressCallback] = None,
        steps_total: Optional[int] = None,
    ) -> torch.Tensor:
        """Denoise ``encoded.num_frames`` frames (whole chunks) -> scaled latents (F, 4, h, w) on the device.

        ``audio_windows`` (F, S, D) conditions each frame (None: no audio layer). ``skip_chunk(start, stop)`` may
        return True for chunks nobody will see (no face, silence); their random draws are still taken so later
        chunks do not change, and their latents are the encoded reference (cheap to decode, never composited).
        ``callback`` gets the steps done since the sampler was made and ``steps_total`` (default: to the end of
        this call), so a streaming caller passes the whole video's total once.
        """
        num_frames = encoded.num_frames
        opts = self.options
        if self._chunks_to_skip:
            self._fast_forward(encoded.masked_mean.dtype, tuple(encoded.masked_mean.shape[-2:]))
        bounds = chunk_bounds(num_frames, opts.chunk_frames)
        done = self.steps_done
        total = steps_total if steps_total is not None else done + len(bounds) * opts.steps
        # The random draws happen chunk by chunk in upstream's order before any denoising, so grouping chunks
        # into one U-Net call changes nothing but speed.
        out: list[Optional[torch.Tensor]] = []
        pending: list[tuple[int, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]] = []
        for start, stop in bounds:
            part = encoded.slice(start, stop)
            masked = to_unet_latents(self._posterior(part.masked_mean, part.masked_logvar))
            ref = to_unet_latents(self._posterior(part.ref_mean, part.ref_logvar))
            if skip_chunk is not None and skip_chunk(self.frames_done + start, self.frames_done + stop):
                # contiguous: the moments may come channels-last, and torch.cat keeps its first input's layout,
                # which the VAE's convolutions round differently; every chunk's latents leave in one layout.
                out.append(ref.to(self.dtype).contiguous())
                continue
            out.append(None)
            audio = None if audio_windows is None else audio_windows[start:stop]
            pending.append((len(out) - 1, masked, ref, audio))
        skipped = len(bounds) - len(pending)
        if skipped and callback is not None:
            done += skipped * opts.steps
            callback(done, total)
        full = [p for p in pending if p[1].shape[0] == opts.chunk_frames]
        short = [[p] for p in pending if p[1].shape[0] != opts.chunk_frames]  # the video's last chunk, if short
        groups = [full[i : i + opts.batch_chunks] for i in range(0, len(full), opts.batch_chunks)] + short
        steps = [self._group_steps([p[1] for p in group], [p[2] for p in group], encoded.mask_latent,
                                   None if audio_windows is None else [p[3] for p in group]) for group in groups]
        # The short tail's uncompiled steps are launch-bound: queued between the last full group's steps, the host
        # launches them while the GPU still runs the full group's kernels.
        for group, latents in zip(groups, self._run_groups(steps, self.interleave_tail and bool(short), done, total,
                                                           callback)):
            done += len(group) * opts.steps
            for p, z in zip(group, latents):
                out[p[0]] = z
        self.frames_done += num_frames
        self.steps_done = done
        if not out:
            return torch.empty(0, LATENT_CHANNELS, *self.noise.shape[-2:], device=self.device)
        return torch.cat(out)

    def sample_vae_latents(self, encoded: EncodedFaces, audio_windows: Optional[torch.Tensor], **kwargs) -> torch.Tensor:
        """:meth:`sample` with the latents in VAE (unscaled, LATENT) units, ready for ``decode``."""
        return to_vae_latents(self.sample(encoded, audio_windows, **kwargs))

    def _unet_batch(self, masked: list[torch.Tensor], ref: list[torch.Tensor], mask_latent: torch.Tensor,
                    audio: Optional[list[torch.Tensor]]) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
        """Conditioning channels ``(B, 9, f, h, w)`` and audio ``(B, f, S, D)`` for a group of equal chunks, the
        group padded to the U-Net's fixed batch; CFG puts the unconditional copies first."""
        dev, dtype = self.device, self.dtype
        fixed = int(getattr(self.unet, "fixed_batch", 1))
        n = len(masked)
        compiled_shape = masked[0].shape[0] == getattr(self.unet, "frames", None)  # a short tail runs eagerly
        if n < fixed and compiled_shape:  # pad with copies of the last chunk to meet the graph's shape; discarded
            masked, ref = masked + [masked[-1]] * (fixed - n), ref + [ref[-1]] * (fixed - n)
            audio = None if audio is None else audio + [audio[-1]] * (fixed - n)
        k, f = len(masked), masked[0].shape[0]

        def to_video(parts: list[torch.Tensor]) -> torch.Tensor:  # k x (f, c, h, w) -> (k, c, f, h, w)
            return torch.stack(parts).to(dev, dtype).permute(0, 2, 1, 3, 4)

        mask = mask_latent.to(dev, dtype).reshape(1, 1, 1, *mask_latent.shape[-2:]).expand(k, 1, f, -1, -1)
        cond = torch.cat([mask, to_video(masked), to_video(ref)], dim=1)
        # With CFG the unconditional copies (first) have all-zero audio; only the conditional copies' audio is
        # passed, which tells the U-Net to add the cross-attention's exact result (its output bias) for the others.
        audio_in = None if audio is None else torch.stack(audio).to(dev, dtype)
        if self.options.guidance_scale > 1.0:
            cond = torch.cat([cond, cond])
        return cond, audio_in, k

    def _group_steps(
        self,
        masked: list[torch.Tensor],
        ref: list[torch.Tensor],
        mask_latent: torch.Tensor,
        audio: Optional[list[torch.Tensor]],
    ) -> Generator[int, None, list[torch.Tensor]]:
        """Denoise equal-length chunks together, yielding the chunk-steps done after each step (for progress);
        returns each chunk's latents (f, 4, h, w). A generator, so two groups' steps can take turns."""
        opts = self.options
        n, f = len(masked), masked[0].shape[0]
        cfg = opts.guidance_scale > 1.0
        cond, audio_in, k = self._unet_batch(masked, ref, mask_latent, audio)
        unet = self.unet
        if f != opts.chunk_frames and hasattr(unet, "short_chunk_steps"):  # a compiled U-Net's uncompiled tail
            unet = unet.short_chunk_steps()
        latents = self.noise.expand(k, -1, f, -1, -1)
        deepcache = None
        if opts.deepcache:
            from ..models.unet import DeepCacheState

            deepcache = DeepCacheState()
        for j, t in enumerate(self.schedule.timesteps.tolist()):
            x = torch.cat([latents, latents]) if cfg else latents
            unet_in = torch.cat([x, cond], dim=1)
            t_in = self._timesteps_on_device[j]
            if deepcache is not None:
                if j % opts.deepcache_interval == 0:
                    deepcache.cached = None
                eps = unet(unet_in, t_in, audio_in, deepcache=deepcache)
            else:
                eps = unet(unet_in, t_in, audio_in)
            if cfg:
                uncond, cond_eps = eps.chunk(2)
                eps = uncond + opts.guidance_scale * (cond_eps - uncond)
            latents = self.schedule.step(eps, t, latents)
            yield n
        return [latents[i].permute(1, 0, 2, 3) for i in range(n)]

    def _run_groups(self, steps: list[Generator[int, None, list[torch.Tensor]]], interleave_last: bool,
                    done: int, total: int, callback: Optional[ProgressCallback]) -> list[list[torch.Tensor]]:
        """Run each group's steps to the end, in order; with ``interleave_last`` the last two groups take turns step
        by step (exact: the groups share nothing but the read-only noise). Returns each group's latents."""
        results: list[Optional[list[torch.Tensor]]] = [None] * len(steps)
        active = list(range(len(steps)))
        while active:
            turn = active[-2:] if interleave_last and len(active) <= 2 else active[:1]
            for i in turn:
                try:
                    done += next(steps[i])
                except StopIteration as finished:
                    results[i] = finished.value
                    active.remove(i)
                    continue
                if callback is not None:
                    callback(done, total)
        return results

    @torch.no_grad()
    def warm_up(self, audio_shape: Optional[tuple[int, int]]) -> None:
        """Run the U-Net once per step kind at the shape a full chunk group will have (compiles ahead of time).

        ``audio_shape``: (S, D) of one frame's audio window, or None without audio. Leaves the random state alone.
        """
        opts = self.options
        f, (h, w) = opts.chunk_frames, self.noise.shape[-2:]
        zeros = [torch.zeros(f, LATENT_CHANNELS, h, w, device=self.device, dtype=self.dtype)] * opts.batch_chunks
        audio = None if audio_shape is None else [torch.zeros(f, *audio_shape, device=self.device)] * opts.batch_chunks
        cond, audio_in, k = self._unet_batch(zeros, zeros, torch.ones(1, h, w), audio)
        x = self.noise.expand(k * (2 if opts.guidance_scale > 1.0 else 1), -1, f, -1, -1)
        unet_in = torch.cat([x, cond], dim=1)
        t_in = self._timesteps_on_device[0]
        if opts.deepcache:
            from ..models.unet import DeepCacheState

            state = DeepCacheState()
            self.unet(unet_in, t_in, audio_in, deepcache=state)
            self.unet(unet_in, t_in, audio_in, deepcache=state)
        else:
            self.unet(unet_in, t_in, audio_in)


def encode_faces(vae, faces: torch.Tensor, mask: torch.Tensor, *, batch_size: int = 16) -> EncodedFaces:
    """Aligned uint8 faces (F,3,R,R) + fixed mask (R,R) -> posterior moments of the masked and reference images."""
    from ..face.mask import mask_latent as downsample_mask
    from ..face.mask import prepare_face_inputs

    if faces.dim() != 4 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3, R, R) uint8, got {tuple(faces.shape)}")
    parts = []
    for chunk in faces.split(batch_size):
        ref, masked, _ = prepare_face_inputs(chunk, mask)
        m_mean, m_logvar = vae.encode_moments(masked)
        r_mean, r_logvar = vae.encode_moments(ref)
        parts.append((m_mean, m_logvar, r_mean, r_logvar))
    cat = [torch.cat(p) for p in zip(*parts)]
    latent_hw = tuple(cat[0].shape[-2:])
    return EncodedFaces(*cat, mask_latent=downsample_mask(mask, latent_hw))


def decode_faces(vae, latents: torch.Tensor, ref_faces: torch.Tensor, mask: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
    """Scaled (U-Net unit) latents (F,4,h,w) -> faces in [-1,1] (F,3,R,R), everything outside the mouth from the
    reference (upstream's final step; :func:`decode_vae_latents` takes VAE units)."""
    return decode_vae_latents(vae, to_vae_latents(latents), ref_faces, mask, batch_size=batch_size)


def decode_vae_latents(vae, latents: torch.Tensor, ref_faces: torch.Tensor, mask: torch.Tensor, *,
                       batch_size: int = 16) -> torch.Tensor:
    """Unscaled (VAE / LATENT unit) latents (F,4,h,w) -> faces in [-1,1] (F,3,R,R), everything outside the mouth
    taken from the reference faces (uint8 aligned faces, or already normalised pixels)."""
    from ..face.restore import paste_mouth

    out = []
    for z, ref in zip(latents.split(batch_size), ref_faces.split(batch_size)):
        decoded = vae.decode(z)
        ref_pixels = ref.to(decoded.device)
        if ref_pixels.dtype == torch.uint8:
            from ..face.mask import prepare_face_inputs

            ref_pixels = prepare_face_inputs(ref_pixels, mask)[0]
        out.append(paste_mouth(decoded, ref_pixels.to(decoded.dtype), mask.to(decoded.device, decoded.dtype)))
    return torch.cat(out)
