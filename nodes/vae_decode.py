"""LatentSyncVAEDecodeComposite: decode the generated faces and paste them back into the full frames."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .types import FACES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BATCH = 16


def image_to_uint8(images: "torch.Tensor", device: Any = None) -> "torch.Tensor":
    """IMAGE float 0..1 (F,H,W,C) -> uint8 with the same channels."""
    import torch

    x = (images.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.to(device) if device is not None else x


def reference_faces(latent: dict, faces: Any, start: int, stop: int, device: Any) -> "torch.Tensor":
    """The reference (unmasked aligned) faces of frames start..stop as uint8 (n,3,R,R)."""
    from . import types as t
    from .face_align import frames_to_uint8

    ref = latent.get(t.KEY_REF_PIXELS)
    if ref is not None and ref.shape[0] == faces.num_frames:
        return ref[start:stop].to(device)
    from ..latentsync.face.align import warp_faces

    frames = frames_to_uint8(faces.images[start:stop], device)
    return warp_faces(frames, faces.matrices[start:stop].to(device), faces.resolution)


class LatentSyncVAEDecodeComposite:
    """Decodes faces, keeps everything outside the mouth from the reference, blends them into the frames."""

    CATEGORY = "LatentSync/stages"
    SEARCH_ALIASES = ["VAE Decode", "paste face", "composite"]
    DESCRIPTION = (
        "Decodes the sampled latents to faces, keeps all but the mouth region from the original face, then "
        "warps each face back into its frame with upstream's soft-edged paste. Pixels outside the pasted face, "
        "and whole frames where no face was found, are returned exactly as they came in. Outputs the full "
        "frames (same count, size and order as the input video) and the generated aligned faces."
    )
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("images", "generated_faces")
    OUTPUT_TOOLTIPS = (
        "Lip-synced full frames, same count, size and channels as the frames given to Face Align Crop.",
        "The generated aligned faces (frames, R, R, 3), e.g. for face restoration before your own compositing.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "The same VAE as in Masked VAE Encode."}),
                "samples": ("LATENT", {"tooltip": "From LatentSync Sampler."}),
                "faces": (FACES, {"tooltip": "From LatentSync Face Align Crop (alignment and source frames)."}),
            }
        }

    def decode(self, vae, samples, faces):
        import torch

        from ..latentsync.pipeline import stages
        from . import comfy_compat as cc
        from . import types as t
        from .vae_adapter import ComfyVAE

        latents = samples["samples"]
        if latents.dim() != 4 or latents.shape[1] != 4:
            raise ValueError(f"samples: expected SD latents [frames, 4, h, w], got {tuple(latents.shape)}.")
        num = faces.num_frames
        if latents.shape[0] != num:
            raise ValueError(
                f"samples has {latents.shape[0]} frames but faces describes {num}; decode the sampler output that "
                "came from these faces."
            )
        expected = faces.resolution // 8
        if tuple(latents.shape[-2:]) != (expected, expected):
            raise ValueError(f"samples are {latents.shape[-1] * 8} px faces; faces were aligned at {faces.resolution} px.")
        mask = samples.get(t.KEY_FACE_MASK, faces.mask)
        adapter = ComfyVAE(vae)
        device = cc.torch_device()
        out_dev = cc.intermediate_device()
        silent = samples.get(t.KEY_SILENT)  # silent frames keep their original mouth
        paste = stages.frames_to_paste(num, faces.found, silent if silent is not None and len(silent) == num else None)
        progress = cc.Progress(num)
        frames_out, faces_out = [], []
        for start in range(0, num, BATCH):
            stop = min(start + BATCH, num)
            ref = reference_faces(samples, faces, start, stop, adapter.device)
            generated = stages.decode(adapter, latents[start:stop].float(), ref, mask.to(adapter.device),
                                      batch_size=BATCH).to(device)
            source = faces.images[start:stop]
            frames = image_to_uint8(source, device)
            pasted = stages.composite(frames, generated.float(), faces.matrices[start:stop].to(device),
                                      faces.resolution, apply=paste[start:stop].to(device))
            # Only pixels the paste changed are replaced: everything else stays bit-identical to the input IMAGE.
            changed = (pasted != frames).to(out_dev)
            result = source.to(out_dev, torch.float32, copy=True)
            result[changed] = pasted.to(out_dev)[changed].float() / 255.0
            frames_out.append(result)
            faces_out.append(((generated.float() + 1.0) / 2.0).clamp_(0, 1).permute(0, 2, 3, 1).to(out_dev))
            progress.set(stop)
        return (torch.cat(frames_out), torch.cat(faces_out))


NODE_CLASS_MAPPINGS = {"LatentSyncVAEDecodeComposite": LatentSyncVAEDecodeComposite}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncVAEDecodeComposite": "LatentSync VAE Decode Composite"}
