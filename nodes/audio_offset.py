"""LatentSync Fix Audio Offset: SyncNet measures how many frames the audio is off from the lips and shifts it, as
upstream's data preprocessing does; a thin adapter over ``latentsync.metrics.offset``."""

from __future__ import annotations

import logging

from .checks import fps_input, fps_problem, image_batch_problem
from .sync_score import scorer_inputs
from .types import SYNCNET

log = logging.getLogger(__name__)


class LatentSyncFixAudioOffset:
    """Shifts the audio by SyncNet's measured offset so that it matches the lips."""

    CATEGORY = "LatentSync/tools"
    SEARCH_ALIASES = ["audio offset", "av sync", "SyncNet offset", "shift audio"]
    DESCRIPTION = (
        "Measures the audio-video offset with SyncNet v2 (as LatentSync Sync Score) and shifts the audio by it, "
        "sample-exact, as upstream LatentSync's data preprocessing (sync_av.py) does: a positive offset (the sound "
        "comes before the lips) delays the audio, padding the start with silence; the length never changes. Use it "
        "on a video's own speech (or a cleaned take of it) before lip-syncing. A clip that cannot be scored (too "
        "short, no face, silent) or whose confidence is below min_confidence keeps its audio, and the report says why."
    )
    FUNCTION = "fix"
    RETURN_TYPES = ("AUDIO", "INT", "STRING")
    RETURN_NAMES = ("audio", "offset", "report")
    OUTPUT_TOOLTIPS = (
        "The audio shifted by the offset (same rate, channels and length), or unchanged.",
        "The shift applied, in frames at 25 fps (positive: the audio was delayed); 0 when unchanged.",
        "One line: the shift and the sync score, or why the audio was left as it is.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames whose lips the audio should match."}),
                "audio": ("AUDIO", {"tooltip": "The audio to shift (any rate / channels), starting with the first frame."}),
                "fps": fps_input("Frame rate of the frames."),
                "syncnet": (SYNCNET, {"tooltip": "From LatentSync Load SyncNet."}),
                "min_confidence": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1,
                    "tooltip": "Shift only when the SyncNet confidence reaches this (upstream's data filter: 3). "
                               "0: always shift a scorable clip.",
                }),
                "max_offset": ("INT", {
                    "default": 15, "min": 0, "max": 15,
                    "tooltip": "Shift only offsets up to this many frames (upstream's data filter: 6).",
                }),
                **scorer_inputs(),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, fps):
        return fps_problem(fps) or True

    def fix(self, images, audio, fps, syncnet, min_confidence, max_offset, detect_faces, min_track):
        from ..latentsync.audio.waveform import audio_from_mapping
        from ..latentsync.metrics.offset import fix_offset
        from ..latentsync.metrics.score import SyncModels, SyncOptions
        from . import comfy_compat as cc

        problem = image_batch_problem(images) or fps_problem(fps)
        if problem:
            raise ValueError(problem)
        waveform, rate = audio_from_mapping(audio)
        cc.load_models([syncnet.syncnet] + ([syncnet.s3fd] if detect_faces else []), force_full_load=True)
        models = SyncModels(cc.module_of(syncnet.syncnet), cc.module_of(syncnet.s3fd) if detect_faces else None)
        shifted, record = fix_offset(images, waveform, rate, float(fps), models, SyncOptions(min_track=int(min_track)),
                                     detect=bool(detect_faces), min_confidence=float(min_confidence),
                                     max_offset=int(max_offset))
        report = record.report()
        log.info("LatentSync fix audio offset: %s", report)
        out = {"waveform": shifted[None].float(), "sample_rate": rate}
        frames = record.frames if record.applied else 0
        ui = {"applied": record.applied, "offset": frames, "samples": record.samples if record.applied else 0,
              "scorable": record.score.scorable, "report": report}
        return {"ui": {"latentsync_offset": [ui], "text": [report]}, "result": (out, frames, report)}


NODE_CLASS_MAPPINGS = {"LatentSyncFixAudioOffset": LatentSyncFixAudioOffset}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncFixAudioOffset": "LatentSync Fix Audio Offset"}
