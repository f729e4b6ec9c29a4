"""ComfyUI node classes of the LatentSync pack (V1 registration).

Importing this package is cheap: node modules import torch, ComfyUI internals and the library only when a
node runs. Node IDs and input names are frozen: saved workflows refer to them.
"""

from __future__ import annotations

from . import (audio_embed, audio_offset, face_align, load_media, loader, match_length, mux, sampler, sync_score,
               vae_decode, vae_encode, video_file)

_MODULES = (loader, audio_embed, face_align, vae_encode, sampler, vae_decode, mux, match_length, load_media, video_file,
            sync_score, audio_offset)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
