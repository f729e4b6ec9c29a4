"""LatentSyncMaskedVAEEncode: aligned faces -> VAE posteriors of the mouth-masked and the reference faces."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .checks import image_batch_problem
from .types import FACES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BATCH = 16


def aligned_to_uint8(aligned: "torch.Tensor", resolution: int) -> "torch.Tensor":
    """Aligned IMAGE (F,R,R,C) float -> uint8 (F,3,R,R), checking the face resolution."""
    from .face_align import frames_to_uint8

    problem = image_batch_problem(aligned, "aligned_faces")
    if problem:
        raise ValueError(problem)
    if tuple(aligned.shape[1:3]) != (resolution, resolution):
        raise ValueError(
            f"aligned_faces are {aligned.shape[2]}x{aligned.shape[1]} px but the model works at {resolution}x{resolution}: "
            "connect the aligned_faces output of LatentSync Face Align Crop (resize edited faces back to that size)."
        )
    return frames_to_uint8(aligned).permute(0, 3, 1, 2).contiguous()


class LatentSyncMaskedVAEEncode:
    """Encodes the aligned faces twice: with the mouth masked out, and whole (the reference)."""

    CATEGORY = "LatentSync/stages"
    SEARCH_ALIASES = ["VAE Encode", "mouth mask"]
    DESCRIPTION = (
        "Encodes the aligned faces with the VAE: once with the mouth region masked (what LatentSync repaints) and "
        "once unmasked (the identity reference). The LATENT's samples are the masked faces' posterior means "
        "(unscaled, as core VAE Encode), so core latent nodes can preview it; the extra keys carry what the "
        "LatentSync Sampler needs (both posteriors, the latent mask and the reference pixels)."
    )
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Masked-face latents [frames, 4, R/8, R/8] plus LatentSync's conditioning, for the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "sd-vae-ft-mse, from Load LatentSync Model or core Load VAE."}),
                "aligned_faces": ("IMAGE", {"tooltip": "aligned_faces from LatentSync Face Align Crop (possibly "
                                                       "restored or edited, same size)."}),
                "faces": (FACES, {"tooltip": "faces from LatentSync Face Align Crop (mask and frame flags)."}),
            }
        }

    def encode(self, vae, aligned_faces, faces):
        import torch

        from ..latentsync.pipeline import stages
        from . import comfy_compat as cc
        from . import types as t
        from .vae_adapter import ComfyVAE

        pixels = aligned_to_uint8(aligned_faces, faces.resolution)
        if pixels.shape[0] != faces.num_frames:
            raise ValueError(
                f"aligned_faces has {pixels.shape[0]} frames but faces describes {faces.num_frames}: connect both "
                "outputs of the same LatentSync Face Align Crop."
            )
        adapter = ComfyVAE(vae)
        out_dev = cc.intermediate_device()
        progress = cc.Progress(pixels.shape[0])
        parts = []
        for start in range(0, pixels.shape[0], BATCH):
            enc = stages.encode(adapter, pixels[start:start + BATCH], faces.mask, batch_size=BATCH)
            parts.append(enc)
            progress.set(min(start + BATCH, pixels.shape[0]))

        def cat(name: str):
            return torch.cat([getattr(p, name) for p in parts]).float().to(out_dev)

        masked_mean = cat("masked_mean")
        latent = {
            "samples": masked_mean,
            t.KEY_MASKED_MEAN: masked_mean,
            t.KEY_MASKED_LOGVAR: cat("masked_logvar"),
            t.KEY_REF_MEAN: cat("ref_mean"),
            t.KEY_REF_LOGVAR: cat("ref_logvar"),
            t.KEY_MASK_LATENT: parts[0].mask_latent.float().cpu(),
            t.KEY_REF_PIXELS: pixels,
            t.KEY_FACE_MASK: faces.mask,
            t.KEY_FOUND: faces.found,
        }
        return (latent,)


NODE_CLASS_MAPPINGS = {"LatentSyncMaskedVAEEncode": LatentSyncMaskedVAEEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncMaskedVAEEncode": "LatentSync Masked VAE Encode"}
