"""LatentSyncVideoFile: video file + audio file -> lip-synced mp4, streamed (for videos too long for an IMAGE batch)."""

from __future__ import annotations

import logging
import os

from . import paths
from . import quality as presets
from .checks import require_numbers
from .load_media import AUDIO_SUFFIXES, VIDEO_SUFFIXES, _file_state, _path_problem
from .sampler import compiled_unet, unet_memory
from .types import MODEL, SYNCNET

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class LatentSyncVideoFile:
    """The whole LatentSync pipeline on files, in bounded memory, writing an mp4."""

    CATEGORY = "LatentSync/output"
    SEARCH_ALIASES = ["lip sync", "lipsync", "dub", "talking head", "Save Video", "video file"]
    DESCRIPTION = (
        "Runs the complete lip-sync on a video (or a still image) file and an audio file and writes an H.264/AAC "
        "mp4, without ever holding the whole video in memory: frames are decoded, aligned, generated, pasted "
        "back and encoded a window at a time. Same results as the node-by-node graph with the same settings. "
        "Use it for long videos; use the separate nodes to edit intermediate results."
    )
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def _outputs(cls):
        from . import comfy_compat as cc

        return ("STRING", "VIDEO") if cc.has_video_type() else ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        # read here, not at import: importing the pack stays light
        from ..latentsync.options import node_input

        return {
            "required": {
                "model": (MODEL, {"tooltip": "From Load LatentSync Model."}),
                "vae": ("VAE", {"tooltip": "sd-vae-ft-mse, from Load LatentSync Model or core Load VAE."}),
                "video": (paths.input_files(VIDEO_SUFFIXES + IMAGE_SUFFIXES), {
                    "video_upload": True,
                    "tooltip": "The video (or a still image) in ComfyUI's input folder."}),
                "audio": (paths.input_files(AUDIO_SUFFIXES + VIDEO_SUFFIXES), {
                    "tooltip": "The speech (an audio file, or a video whose audio track is used)."}),
                "seed": node_input("seed", control_after_generate=True),
                "steps": node_input("steps"),
                "guidance": node_input("guidance"),
                "deepcache": node_input("deepcache"),
                "detector": node_input("detector", tooltip="Face detector (see Face Align Crop)."),
                "face_index": node_input("face_index", tooltip="-1 = largest face; 0, 1, ... = left to right."),
                "length_policy": node_input("length_policy"),
                "filename_prefix": ("STRING", {"default": "LatentSync", "tooltip": "Output file name prefix."}),
                "crf": node_input("crf"),
            },
            "optional": {
                "video_path": ("STRING", {"default": "", "tooltip": "Video/image path; overrides the upload choice. "
                                                                 "Only inside ComfyUI's input/output/temp folders "
                                                                 "or LATENTSYNC_ALLOWED_DIRS."}),
                "audio_path": ("STRING", {"default": "", "tooltip": "Audio path; overrides the upload choice. Only "
                                                                 "inside ComfyUI's input/output/temp folders or "
                                                                 "LATENTSYNC_ALLOWED_DIRS."}),
                "compile": node_input("compile"),
                "batch_chunks": node_input("batch_chunks"),
                "quality": node_input("quality"),
                "require_face": node_input("require_face", tooltip="Fail (and write nothing) when no frame has a "
                                           "usable face. Off: such a video is passed through unchanged, and the "
                                           "node's summary says NO FACE."),
                # The graph's options (Face Align Crop's smooth, the sampler's keep_silent_mouth and posterior),
                # same names, defaults and meaning: the streaming node gives what the graph gives.
                "keep_silent_mouth": node_input("keep_silent_mouth"),
                "posterior": node_input("posterior"),
                "smooth": node_input("smooth"),
                # The sync gate (appended: older workflows load with it off).
                "min_sync": node_input("min_sync"),
                "sync_retries": node_input("sync_retries"),
                "syncnet": (SYNCNET, {"tooltip": "From LatentSync Load SyncNet; needed when min_sync is "
                                                              "above 0."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def IS_CHANGED(cls, video, audio, video_path="", audio_path="", **_):
        return _file_state(video, video_path, "video") + _file_state(audio, audio_path, "audio")

    @classmethod
    def VALIDATE_INPUTS(cls, video_path=""):  # one input, so its message shows once and on it; the dropdowns and
        return _path_problem(video_path, "video") or True  # INTs get ComfyUI's checks, the rest is checked at run time

    def run(self, model, vae, video, audio, seed, steps, guidance, deepcache, detector, face_index, length_policy,
            filename_prefix, crf, video_path="", audio_path="", compile=False, batch_chunks=1, quality="custom",
            require_face=False, keep_silent_mouth=False, posterior="sample (upstream)", smooth=True, prompt=None,
            min_sync=0.0, sync_retries=2, syncnet=None,
            extra_pnginfo=None):
        import folder_paths

        from ..latentsync.io.image import is_image_path
        from ..latentsync.io.video import probe_video
        from ..latentsync.pipeline.loading import LipsyncModels
        from ..latentsync.pipeline.runner import RunOptions, lipsync_file
        from ..latentsync.pipeline.sampler import SamplerOptions
        from . import comfy_compat as cc
        from .mux import save_metadata
        from .vae_adapter import ComfyVAE

        require_numbers(seed=seed, steps=steps, guidance=guidance, crf=crf, batch_chunks=batch_chunks,
                        face_index=None if face_index == -1 else face_index)
        steps, guidance, deepcache = presets.apply(quality, steps, guidance, deepcache, model.resolution)
        video_file = paths.resolve_input(video, video_path, "video")
        audio_file = paths.resolve_input(audio, audio_path, "audio")
        width = height = 0
        if not is_image_path(video_file):
            info = probe_video(video_file)
            width, height = info.width, info.height
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height)
        os.makedirs(folder, exist_ok=True)
        file = f"{name}_{counter:05}_.mp4"
        while os.path.exists(os.path.join(folder, file)):
            counter += 1
            file = f"{name}_{counter:05}_.mp4"
        output = os.path.join(folder, file)

        options = RunOptions(
            sampler=SamplerOptions(steps=int(steps), guidance_scale=float(guidance), seed=int(seed),
                                   deepcache=bool(deepcache), batch_chunks=int(batch_chunks),
                                   posterior="mean" if posterior == "mean" else "sample"),
            length_policy=length_policy, detector=detector,
            face_index="largest" if face_index < 0 else int(face_index),
            keep_silent_mouth=bool(keep_silent_mouth), smooth=bool(smooth),
            crf=int(crf), models_dirs=list(model.models_dirs), compile=bool(compile), require_face=bool(require_face),
            metadata=save_metadata(prompt, extra_pnginfo),
            min_sync=float(min_sync) if min_sync else None, sync_retries=int(sync_retries),
        )
        options.sampler.validate()
        adapter = ComfyVAE(vae, manage_memory=False)  # all three networks are loaded together below
        latent_hw = (model.resolution // 8, model.resolution // 8)
        plain_unet, whisper = model.load_all(vae, unet_memory(model, options.sampler.chunk_frames, latent_hw, guidance,
                                                              chunks=options.sampler.batch_chunks))
        progress = cc.Progress(1)

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.set(done, total)

        unet = plain_unet
        if options.compile:  # the session's cached wrapper (the runner leaves an already compiled U-Net as it is)
            unet = compiled_unet(model, unet, device=model.unet.load_device, frames=options.sampler.chunk_frames,
                                 fixed_batch=options.sampler.batch_chunks)
            if unet is plain_unet:  # compiling is impossible here (warned once already)
                options.compile = False
        nets = LipsyncModels(unet=unet, whisper=whisper, resolution=model.resolution)
        report = lipsync_file(nets, adapter, video_file, audio_file, output, options, device=model.unet.load_device,
                              dtype=model.dtype, progress=on_progress, sync_models=_gate_models(min_sync, sync_retries,
                                                                                                 syncnet))
        log.info("LatentSync: %s", report.summary())
        result = [output]
        if len(self._outputs()) == 2:
            from comfy_api.input_impl import VideoFromFile

            result.append(VideoFromFile(output))
        preview = {"filename": file, "subfolder": subfolder, "type": "output", "format": "video/mp4",
                   "frame_rate": float(report.fps)}
        return {"ui": {"images": [preview], "animated": (True,), "latentsync_video": [preview],
                       "text": [report.summary(), *report.gate_lines()],
                       **({"latentsync_gate": [s.as_dict() for s in report.gate]} if report.gate else {})},
                "result": tuple(result)}


def _gate_models(min_sync: float, sync_retries: int, syncnet):
    """The sync gate's SyncNet v2 (loaded on the device; the gate scores the tracked faces, S3FD stays unloaded), or
    None when min_sync is 0 (off); ValueError naming the input for a bad number or a missing syncnet input."""
    from ..latentsync.option_checks import OptionError, check_number
    from ..latentsync.pipeline.gate_runner import MIN_SYNC, SYNC_RETRIES

    try:
        check_number(min_sync, MIN_SYNC, "min_sync")
        check_number(sync_retries, SYNC_RETRIES, "sync_retries")
    except OptionError as exc:
        raise ValueError(str(exc)) from None
    if not min_sync:
        return None
    if syncnet is None:
        raise ValueError("min_sync is set (the sync gate) but the syncnet input is not connected: connect LatentSync "
                         "Load SyncNet to it, or set min_sync to 0")
    from ..latentsync.metrics.score import SyncModels
    from . import comfy_compat as cc

    cc.load_models([syncnet.syncnet], force_full_load=True)
    return SyncModels(cc.module_of(syncnet.syncnet))


LatentSyncVideoFile.RETURN_TYPES = LatentSyncVideoFile._outputs()
LatentSyncVideoFile.RETURN_NAMES = ("path", "video")[: len(LatentSyncVideoFile.RETURN_TYPES)]
LatentSyncVideoFile.OUTPUT_TOOLTIPS = ("Path of the written mp4.", "The mp4 as a VIDEO.")[
    : len(LatentSyncVideoFile.RETURN_TYPES)]

NODE_CLASS_MAPPINGS = {"LatentSyncVideoFile": LatentSyncVideoFile}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncVideoFile": "LatentSync Video File (streaming)"}
