"""LatentSyncMatchLength: make a frame batch and an audio clip the same length (loop, ping-pong, trim, pad)."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from .checks import fps_input, fps_problem, image_batch_problem

log = logging.getLogger(__name__)



def audio_frame_count(audio: Mapping[str, Any], fps: float) -> int:
    """Frames the audio drives at ``fps``: upstream's count from the Whisper feature rows (two past its end)."""
    from ..latentsync.audio.features import window_row_counts
    from ..latentsync.audio.mel import num_mel_frames
    from ..latentsync.audio.waveform import audio_from_mapping, to_16k_mono
    from ..latentsync.audio.windows import upstream_frame_count

    waveform, rate = audio_from_mapping(audio)
    samples = to_16k_mono(waveform, rate).numel()
    rows = sum(window_row_counts(num_mel_frames(samples), 3000))
    return upstream_frame_count(rows, float(fps))


class LatentSyncMatchLength:
    """Plans the output length from the video and audio lengths and applies it to both."""

    CATEGORY = "LatentSync/tools"
    SEARCH_ALIASES = ["loop video", "ping pong", "trim", "pad audio", "match audio length"]
    DESCRIPTION = (
        "Matches the video frames to the audio before lip-syncing. pingpong (upstream LatentSync): output as long "
        "as the audio, the video played forward, backward, forward... (a longer video is cut); loop: forward "
        "repeats; trim: the shorter of the two; hold_last: as long as the audio, a short video holds its last "
        "frame; pad_audio: as long as the video, short audio padded with silence. A single image is held for "
        "the whole audio. The audio comes back trimmed or padded to frames / fps."
    )
    FUNCTION = "match"
    RETURN_TYPES = ("IMAGE", "AUDIO", "INT", "FLOAT")  # fps last: links saved before it existed stay valid
    RETURN_NAMES = ("images", "audio", "frame_count", "fps")
    OUTPUT_TOOLTIPS = (
        "The frames re-ordered / repeated / cut to the planned length.",
        "The audio trimmed or padded with silence to frame_count / fps seconds (original rate and channels).",
        "Number of output frames.",
        "The frame rate of the frames (the fps input), to link to Whisper Audio Embed and the mux so one widget "
        "sets it for the whole graph.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        from ..latentsync.options import node_input  # read here, not at import: importing the pack stays light

        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Video frames, or a single image for a talking still."}),
                "audio": ("AUDIO", {"tooltip": "The speech the frames must cover."}),
                "fps": fps_input("Frame rate of the frames (for a still image: the output frame rate)."),
                "policy": node_input("length_policy", tooltip="How to reconcile the lengths (see the node "
                                     "description); pingpong is upstream's behaviour."),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, fps):
        return fps_problem(fps) or True

    def match(self, images, audio, fps, policy):
        from ..latentsync.audio.waveform import audio_from_mapping
        from ..latentsync.pipeline.length import POLICIES, apply_to_frames, apply_to_waveform, plan_length

        problem = image_batch_problem(images) or fps_problem(fps)
        if problem:
            raise ValueError(problem)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}.")
        audio_frames = audio_frame_count(audio, fps)
        plan = plan_length(int(images.shape[0]), audio_frames, policy)
        frames = apply_to_frames(images, plan)
        waveform, rate = audio_from_mapping(audio)
        out_audio = {"waveform": apply_to_waveform(waveform, rate, plan, fps).unsqueeze(0).contiguous(),
                     "sample_rate": rate}
        log.info("LatentSync match length (%s): %d video frames, audio %d frames -> %d frames",
                 policy, images.shape[0], audio_frames, plan.num_frames)
        return (frames, out_audio, int(plan.num_frames), float(fps))


NODE_CLASS_MAPPINGS = {"LatentSyncMatchLength": LatentSyncMatchLength}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncMatchLength": "LatentSync Match Length"}
