"""LatentSyncWhisperAudioEmbed: any AUDIO -> Whisper features for one clip (LATENTSYNC_AUDIO)."""

from __future__ import annotations

import logging

from .checks import fps_input, fps_problem
from .editor import HIDDEN, with_badge
from .types import AUDIO_FEATURES, MODEL

log = logging.getLogger(__name__)


class LatentSyncWhisperAudioEmbed:
    """Resamples the audio to 16 kHz mono and runs the Whisper encoder over it in 30 s windows (as upstream)."""

    CATEGORY = "LatentSync/stages"
    SEARCH_ALIASES = ["whisper", "audio encoder", "speech features"]
    DESCRIPTION = (
        "Turns an AUDIO (any sample rate and channel count: LoadAudio, a TTS node, LatentSync Load Video) into "
        "Whisper encoder features, 50 per second, exactly as upstream LatentSync computes them. fps is the frame "
        "rate of the video the audio will drive; the sampler cuts one audio window per video frame from it."
    )
    FUNCTION = "embed"
    RETURN_TYPES = (AUDIO_FEATURES,)
    RETURN_NAMES = ("audio_features",)
    OUTPUT_TOOLTIPS = ("Whisper features of the clip with its frame rate and length in frames, for the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "From Load LatentSync Model (its Whisper encoder is used)."}),
                "audio": ("AUDIO", {"tooltip": "The speech to lip-sync to. Any rate / channels; down-mixed and "
                                               "resampled to 16 kHz internally. The input is not modified."}),
                "fps": fps_input("Frame rate of the video (e.g. the fps output of LatentSync Load Video or Get Video "
                                 "Components). Upstream LatentSync assumes 25."),
            },
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def VALIDATE_INPUTS(cls, fps):
        return fps_problem(fps) or True

    def embed(self, model, audio, fps, unique_id=None):
        import torch

        from ..latentsync.audio.features import whisper_features
        from ..latentsync.audio.waveform import audio_from_mapping, to_16k_mono
        from ..latentsync.audio.windows import upstream_frame_count
        from ..latentsync.configs import AUDIO_SAMPLE_RATE
        from . import comfy_compat as cc
        from .types import LatentSyncAudio

        problem = fps_problem(fps)
        if problem:
            raise ValueError(problem)
        waveform, rate = audio_from_mapping(audio)
        wav16 = to_16k_mono(waveform, rate)
        patcher = model.whisper
        whisper = model.load_whisper(_whisper_memory(wav16.numel(), patcher))  # the model loads itself
        cc.check_interrupt()
        features = whisper_features(whisper, wav16, device=patcher.load_device, dtype=model.whisper_dtype)
        features = features.to(device="cpu", dtype=torch.float32)
        frames = upstream_frame_count(features.shape[0], float(fps))
        result = LatentSyncAudio(
            features=features, fps=float(fps), num_frames=frames, duration=wav16.numel() / AUDIO_SAMPLE_RATE,
            waveform16k=wav16.cpu(),
        )
        log.info("LatentSync audio: %.2f s -> %d feature rows -> %d frames at %.3f fps",
                 result.duration, features.shape[0], frames, result.fps)
        text, warn = _speech_summary(result.waveform16k, frames, result.fps, result.duration)
        return with_badge((result,), text, warn, unique_id)


SILENT_DBFS = -60.0  # the silence detector's absolute floor: quieter than this everywhere = no speech at all


def _speech_summary(wav16k, frames: int, fps: float, seconds: float) -> tuple[str, bool]:
    """The line shown under the node: length, and whether (or where) the audio is silent. A silent clip makes the
    sampler draw a mouth for silence on every frame unless its keep_silent_mouth is on, hence the warning."""
    from ..latentsync.audio.silence import block_levels_db, silent_frames

    text = f"{seconds:.2f} s · {frames} frames at {fps:.3g} fps"
    if wav16k.numel() == 0 or float(block_levels_db(wav16k).max()) < SILENT_DBFS:
        return ("silent audio: no speech to sync (the Sampler's keep_silent_mouth keeps the original mouth) · "
                + text), True
    quiet = int(silent_frames(wav16k, frames, fps).sum()) if frames > 0 else 0
    if quiet:
        text += f" · pauses in {quiet}/{frames} frames"
    return text, False


def _whisper_memory(num_samples: int, patcher) -> int:
    """Activation estimate for up to 8 windows of 1500 tokens (attention + MLP) in the encoder's width."""
    from ..latentsync.configs import AUDIO_SAMPLE_RATE

    width = getattr(getattr(patcher.model.inner, "dims", None), "n_audio_state", 384)
    windows = min(8, max(1, num_samples // (30 * AUDIO_SAMPLE_RATE) + 1))
    return int(windows * 1500 * width * 4 * 24)


NODE_CLASS_MAPPINGS = {"LatentSyncWhisperAudioEmbed": LatentSyncWhisperAudioEmbed}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncWhisperAudioEmbed": "LatentSync Whisper Audio Embed"}
