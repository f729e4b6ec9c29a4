"""LatentSyncMuxAudio: frames + audio -> H.264/AAC mp4 in ComfyUI's output folder, with a preview."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Mapping

from . import comfy_compat as cc
from .checks import fps_input, fps_problem, image_batch_problem

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BATCH = 32


def audio_for_frames(audio: Mapping[str, Any], num_frames: int, fps: float) -> dict:
    """A new AUDIO trimmed or zero-padded to exactly ``num_frames / fps`` seconds (the input is not modified)."""
    import torch

    from ..latentsync.audio.waveform import audio_from_mapping
    from ..latentsync.io.timing import samples_for_frames

    waveform, rate = audio_from_mapping(audio)  # (C, T)
    target = samples_for_frames(num_frames, fps, rate)
    if waveform.shape[-1] >= target:
        out = waveform[..., :target]
    else:
        pad = torch.zeros(*waveform.shape[:-1], target - waveform.shape[-1], dtype=waveform.dtype)
        out = torch.cat([waveform, pad], dim=-1)
    return {"waveform": out.unsqueeze(0).contiguous(), "sample_rate": int(rate)}


def save_metadata(prompt: Any, extra_pnginfo: Any) -> dict:
    """prompt/workflow JSON for the file's metadata, unless ComfyUI runs with --disable-metadata."""
    args = cc.comfy_args()
    if args is not None and getattr(args, "disable_metadata", False):
        return {}
    meta = {}
    if prompt is not None:
        meta["prompt"] = json.dumps(prompt)
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            meta[key] = json.dumps(value)
    return meta


def write_mp4(path: str, images: "torch.Tensor", fps: float, audio: Mapping[str, Any] | None, crf: int,
              metadata: dict) -> None:
    """Encode IMAGE frames (+ audio) to ``path`` in batches (bounded extra memory)."""
    from ..latentsync.audio.waveform import audio_from_mapping
    from ..latentsync.io.timing import as_fps
    from ..latentsync.io.video import VideoWriter
    from .vae_decode import image_to_uint8

    track = audio_from_mapping(audio) if audio is not None else None
    kwargs = {"audio": track, "crf": int(crf), "metadata": metadata or None}
    frames = images if images.shape[-1] == 3 else images[..., :3] if images.shape[-1] == 4 else images.expand(
        *images.shape[:-1], 3)
    with VideoWriter(path, as_fps(float(fps)), **kwargs) as writer:
        for start in range(0, frames.shape[0], BATCH):
            writer.write(image_to_uint8(frames[start:start + BATCH]).cpu().numpy())
            cc.check_interrupt()


def output_types() -> tuple[str, ...]:
    base = ("IMAGE", "AUDIO", "FLOAT")
    return base + ("VIDEO",) if cc.has_video_type() else base


class LatentSyncMuxAudio:
    """Writes the lip-synced frames with their audio to an mp4 and passes everything on."""

    CATEGORY = "LatentSync/output"
    SEARCH_ALIASES = ["Save Video", "save mp4", "Video Combine", "mux audio", "dub"]
    DESCRIPTION = (
        "Encodes the frames at the given fps with H.264 (libx264, crf) and muxes the audio as AAC into one mp4 in "
        "ComfyUI's output folder (temp folder when save_output is off), with the workflow in its metadata. No "
        "system ffmpeg needed. The audio is trimmed or padded with silence to the video's length. Also returns "
        "the frames, that audio and fps for further nodes (and a VIDEO on ComfyUI versions that have the type)."
    )
    FUNCTION = "mux"
    OUTPUT_NODE = True
    RETURN_TYPES = output_types()
    RETURN_NAMES = ("images", "audio", "fps", "video")[: len(RETURN_TYPES)]
    OUTPUT_TOOLTIPS = (
        "The frames, unchanged.",
        "The audio trimmed or padded to exactly frames / fps seconds (original rate and channels).",
        "The frame rate used.",
        "The written mp4 as a VIDEO (for Save Video / Get Video Components).",
    )[: len(RETURN_TYPES)]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames to encode (e.g. from LatentSync VAE Decode Composite)."}),
                "audio": ("AUDIO", {"tooltip": "The audio track (any rate/channels; written as AAC)."}),
                "fps": fps_input("Frame rate of the frames (29.97 is written as 30000/1001)."),
                "filename_prefix": ("STRING", {"default": "LatentSync",
                                               "tooltip": "File name prefix; may contain a subfolder "
                                                          "(e.g. lipsync/clip) and %date:yyyy-MM-dd%."}),
                "crf": ("INT", {"default": 18, "min": 0, "max": 51,
                                "tooltip": "H.264 quality: lower is better and bigger (18 is visually lossless)."}),
                "save_output": ("BOOLEAN", {"default": True,
                                            "tooltip": "Save to the output folder; off writes a preview to the temp "
                                                       "folder (deleted when ComfyUI exits)."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, fps):
        return fps_problem(fps) or True

    def mux(self, images, audio, fps, filename_prefix, crf, save_output, prompt=None, extra_pnginfo=None):
        import folder_paths

        problem = image_batch_problem(images) or fps_problem(fps)
        if problem:
            raise ValueError(problem)
        num, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
        out_audio = audio_for_frames(audio, num, fps)
        kind = "output" if save_output else "temp"
        root = folder_paths.get_output_directory() if save_output else folder_paths.get_temp_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, root, width, height)
        os.makedirs(folder, exist_ok=True)
        file = f"{name}_{counter:05}_.mp4"
        while os.path.exists(os.path.join(folder, file)):  # never overwrite (another run may share the counter)
            counter += 1
            file = f"{name}_{counter:05}_.mp4"
        path = os.path.join(folder, file)
        write_mp4(path, images, fps, out_audio, crf, save_metadata(prompt, extra_pnginfo) if save_output else {})
        log.info("LatentSync: wrote %s (%d frames, %.3f fps)", path, num, fps)
        result = [images, out_audio, float(fps)]
        if len(self.RETURN_TYPES) == 4:
            from comfy_api.input_impl import VideoFromFile

            result.append(VideoFromFile(path))
        preview = {"filename": file, "subfolder": subfolder, "type": kind, "format": "video/mp4",
                   "frame_rate": float(fps)}
        return {"ui": {"images": [preview], "animated": (True,), "latentsync_video": [preview]}, "result": tuple(result)}


NODE_CLASS_MAPPINGS = {"LatentSyncMuxAudio": LatentSyncMuxAudio}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncMuxAudio": "LatentSync Mux Audio (Save MP4)"}
