"""LatentSyncSampler: audio-conditioned DDIM over 16-frame chunks (CFG, optional DeepCache)."""

from __future__ import annotations

import logging
from typing import Any

from . import quality as presets
from .checks import numbers_problem, require_numbers
from .types import AUDIO_FEATURES, MODEL

log = logging.getLogger(__name__)



def unet_memory(model: Any, frames: int, latent_hw: tuple[int, int], guidance: float, chunks: int = 1) -> int:
    """Activation bytes of one U-Net call on ``chunks`` chunks of ``frames`` frames, for ComfyUI's memory manager.

    Calibrated on an H200 (fp16, SDPA, batch 2 x 16 frames): the peak above the weights was 0.54 GiB at 32x32
    latents and 1.94 GiB at 64x64, i.e. 25-28 bytes per (item x frame x latent pixel x base channel); 32 leaves
    some margin.
    """
    import torch

    batch = (2 if guidance > 1.0 else 1) * max(1, int(chunks))
    base = int(model.config.get("block_out_channels", [320])[0])
    itemsize = torch.tensor([], dtype=model.dtype).element_size()
    return int(batch * frames * latent_hw[0] * latent_hw[1] * base * 16 * itemsize)


def compiled_unet(model: Any, unet: Any, *, device: Any, frames: int, fixed_batch: int) -> Any:
    """``unet`` (the module of ``model``'s U-Net) wrapped by ``maybe_compile`` for chunks of ``frames`` frames in
    groups of ``fixed_batch``, the wrapper kept by the model; the plain module (with a logged warning) where
    compiling is impossible."""
    from ..latentsync.pipeline.compiled import CompiledUNet, maybe_compile

    key = (int(frames), int(fixed_batch))
    kept = model.compiled.get(key)
    if kept is not None:
        if kept.fallback_reason is not None:
            log.warning("LatentSync: compiling the U-Net failed earlier in this session (%s); running uncompiled.",
                        kept.fallback_reason)
        return kept
    wrapper = model.compiled_unet(key, lambda: maybe_compile(unet, True, device=device, frames=key[0],
                                                             fixed_batch=key[1]),
                                  keep=lambda made: isinstance(made, CompiledUNet))
    if isinstance(wrapper, CompiledUNet):
        log.info("LatentSync: compiling the U-Net for calls of %d chunk(s) of %d frames; the first steps take "
                 "1-2 minutes, later runs of this session reuse the compiled graphs.", key[1], key[0])
    return wrapper


def encoded_from_latent(latent: dict) -> Any:
    """The sampler's inputs from a LATENT made by LatentSync Masked VAE Encode (clear error otherwise)."""
    from ..latentsync.pipeline.sampler import EncodedFaces
    from . import types as t

    missing = [k for k in t.ENCODE_KEYS if k not in latent]
    if missing:
        raise ValueError(
            "latent: this LATENT was not made by LatentSync Masked VAE Encode (it lacks "
            f"{', '.join(missing)}); connect that node's output. Core latents cannot condition LatentSync."
        )
    return EncodedFaces(
        masked_mean=latent[t.KEY_MASKED_MEAN], masked_logvar=latent[t.KEY_MASKED_LOGVAR],
        ref_mean=latent[t.KEY_REF_MEAN], ref_logvar=latent[t.KEY_REF_LOGVAR], mask_latent=latent[t.KEY_MASK_LATENT],
    )


class LatentSyncSampler:
    """Repaints the mouth latents of every frame from the audio, 16 frames at a time, as upstream."""

    CATEGORY = "LatentSync/stages"
    SEARCH_ALIASES = ["lip sync", "lipsync", "dub", "talking head", "KSampler"]
    DESCRIPTION = (
        "Generates the mouth region of every frame from the audio: DDIM with classifier-free guidance over "
        "16-frame chunks, upstream LatentSync's sampler (same noise order for a seed). Frame i uses the audio "
        "around time (frame_offset + i) / fps. Chunks without any face are skipped. The progress bar counts "
        "chunks x steps; Cancel stops within one step."
    )
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Denoised latents (unscaled, [frames, 4, R/8, R/8]) for LatentSync VAE Decode Composite.",)

    @classmethod
    def INPUT_TYPES(cls):
        from ..latentsync.options import node_input  # read here, not at import: importing the pack stays light

        return {
            "required": {
                "model": (MODEL, {"tooltip": "From Load LatentSync Model."}),
                "latent": ("LATENT", {"tooltip": "From LatentSync Masked VAE Encode."}),
                "audio_features": (AUDIO_FEATURES, {"tooltip": "From LatentSync Whisper Audio Embed."}),
                "seed": node_input("seed", control_after_generate=True),
                "steps": node_input("steps"),
                "guidance": node_input("guidance"),
                "deepcache": node_input("deepcache"),
                "frame_offset": node_input("frame_offset"),
            },
            "optional": {
                "keep_silent_mouth": node_input("keep_silent_mouth"),
                "posterior": node_input("posterior"),
                "compile": node_input("compile"),
                "batch_chunks": node_input("batch_chunks"),
                "quality": node_input("quality"),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, guidance=None):  # only the float: ComfyUI's own min/max check lets NaN through; the
        return numbers_problem(guidance=guidance) or True  # INTs keep core's check (one message, on that input)

    def sample(self, model, latent, audio_features, seed, steps, guidance, deepcache, frame_offset=0,
               keep_silent_mouth=False, posterior="sample (upstream)", compile=False, batch_chunks=1,
               quality="custom"):
        from ..latentsync.pipeline import stages
        from ..latentsync.pipeline.sampler import SamplerOptions
        from . import comfy_compat as cc
        from . import types as t

        require_numbers(seed=seed, steps=steps, guidance=guidance, frame_offset=frame_offset, batch_chunks=batch_chunks)
        steps, guidance, deepcache = presets.apply(quality, steps, guidance, deepcache, model.resolution)
        encoded = encoded_from_latent(latent)
        frames = encoded.num_frames
        if frames == 0:
            raise ValueError("latent: no frames to sample.")
        latent_hw = tuple(int(s) for s in encoded.masked_mean.shape[-2:])
        if latent_hw != (model.resolution // 8, model.resolution // 8):
            raise ValueError(
                f"latent: faces were encoded at {latent_hw[1] * 8} px but the model works at {model.resolution} px; "
                "use the same model in Face Align Crop and the sampler."
            )
        feats = audio_features
        needed = frame_offset + frames
        if needed > feats.num_frames:
            log.warning("LatentSync: %d frames but the audio covers %d at %.3f fps; the last %d frames get the end "
                        "of the audio (use LatentSync Match Length to loop the video or pad the audio).",
                        needed, feats.num_frames, feats.fps, needed - feats.num_frames)
        windows = stages.audio_windows(feats.features, frames, feats.fps, start_frame=int(frame_offset))

        options = SamplerOptions(steps=int(steps), guidance_scale=float(guidance), seed=int(seed),
                                 deepcache=bool(deepcache), posterior="mean" if posterior == "mean" else "sample",
                                 batch_chunks=int(batch_chunks))
        plan = stages.plan_video(frames, options, model.resolution)
        chunk = options.chunk_frames
        # a compiled U-Net always takes batch_chunks chunks (short groups are padded); eager takes what there is
        per_call = options.batch_chunks if compile else max(1, min(options.batch_chunks, frames // chunk))
        unet = model.load_unet(unet_memory(model, min(chunk, frames), latent_hw, guidance, chunks=per_call))
        device = model.unet.load_device
        if compile:  # after loading: the wrapper runs the module ComfyUI just placed
            unet = compiled_unet(model, unet, device=device, frames=chunk, fixed_batch=options.batch_chunks)
        sampler = stages.new_sampler(unet, plan, device=device, dtype=model.dtype)
        progress = cc.Progress(sampler.steps_total(frames))
        silent = None
        if keep_silent_mouth:
            silent = stages.silent_mask(feats.waveform16k, frames, feats.fps, start_frame=int(frame_offset))
        skip = stages.skip_test(stages.frames_to_paste(frames, latent.get(t.KEY_FOUND), silent))
        latents = stages.sample_fitting(sampler, encoded, windows, skip=skip, callback=progress.callback(),
                                        after_oom=cc.soft_empty_cache, out_device=cc.intermediate_device())
        out = dict(latent)
        out["samples"] = latents.float()
        if silent is not None:
            out[t.KEY_SILENT] = silent
        return (out,)


NODE_CLASS_MAPPINGS = {"LatentSyncSampler": LatentSyncSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncSampler": "LatentSync Sampler"}
