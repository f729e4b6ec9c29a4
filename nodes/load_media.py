"""LatentSyncLoadVideo / LatentSyncLoadAudio: files from ComfyUI's input folder (with upload) or a path.

They exist because ComfyUI before mid 2024 has no AUDIO / video loaders, and give VideoHelperSuite-like
convenience (frames, audio, fps and frame count from one node) on any version. Decoding is PyAV (no ffmpeg
binary needed).
"""

from __future__ import annotations

import logging
import os

from . import paths
from .editor import HIDDEN, with_badge

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".gif")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif")


def _file_state(name: str, path: str, what: str) -> str:
    """Cheap change marker for caching (modification time and size, not a hash of a large video); a refused path
    gets a constant marker, so nothing is looked at outside the allowed folders."""
    from .access import AccessError

    try:
        full = paths.resolve_input(name, path, what)
        st = os.stat(full)
    except AccessError:
        return f"refused:{what}"
    except OSError:
        return f"missing:{what}"
    return f"{full}:{st.st_mtime_ns}:{st.st_size}"


def _choice_or_path_problem(name: str, path: str, what: str) -> "str | None":
    from . import access

    return access.problem(name, path, what)


def _path_problem(path: str, what: str) -> "str | None":
    """The path field's own check, for ``VALIDATE_INPUTS`` (an empty path: the dropdown is used, which ComfyUI checks
    against ``paths.InputChoices``). Taking only ``path`` there keeps each message once, on the input it is about."""
    if not (path or "").strip().strip('"').strip("'"):
        return None
    return _choice_or_path_problem("", path, what)


def _require_file(name: str, path: str, what: str) -> None:
    """At run time: the same message as validation would give (e.g. nothing chosen, or the file has gone)."""
    from .access import AccessError

    problem = _choice_or_path_problem(name, path, what)
    if problem:
        raise AccessError(problem)


def silent_audio(seconds: float, rate: int | None = None) -> dict:
    """``seconds`` of silence as an AUDIO (at the library's 16 kHz unless ``rate`` is given)."""
    import torch

    from ..latentsync.configs import AUDIO_SAMPLE_RATE

    rate = AUDIO_SAMPLE_RATE if rate is None else rate
    return {"waveform": torch.zeros(1, 1, max(1, int(round(seconds * rate)))), "sample_rate": rate}


class LatentSyncLoadVideo:
    """Loads a video's frames, audio track, frame rate and frame count."""

    CATEGORY = "LatentSync/loaders"
    SEARCH_ALIASES = ["Load Video", "video loader", "lip sync video"]
    DESCRIPTION = (
        "Loads a video from ComfyUI's input folder (upload button) or from a path: frames as IMAGE (upright, "
        "rotation applied; a still image gives one frame), its audio track as AUDIO (silence if it has none), fps "
        "and frame count. Paths must lie in ComfyUI's input, output or temp folder or a folder listed in "
        "LATENTSYNC_ALLOWED_DIRS. All frames "
        "are held in memory as float32 (about 25 MB per 1080p frame): use frame_load_cap for long clips, or "
        "LatentSync Video File, which streams."
    )
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "INT")
    RETURN_NAMES = ("images", "audio", "fps", "frame_count")
    OUTPUT_TOOLTIPS = (
        "The frames (frames, height, width, 3), float 0..1.",
        "The video's audio track at its own sample rate (silence when the file has no audio).",
        "The video's average frame rate.",
        "Number of frames loaded.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video": (paths.input_files(VIDEO_SUFFIXES, "video"), {
                    "video_upload": True,
                    "tooltip": "A video in ComfyUI's input folder (use the upload button to add one).",
                }),
                "frame_load_cap": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                           "tooltip": "Load at most this many frames (0 = all)."}),
                "skip_first_frames": ("INT", {"default": 0, "min": 0, "max": 10_000_000,
                                              "tooltip": "Start at this frame (the audio is cut to match)."}),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": "A video file path; when set it is used instead of "
                                                              "the input-folder file. It must lie in ComfyUI's "
                                                              "input, output or temp folder, or in a folder the "
                                                              "server's owner lists in LATENTSYNC_ALLOWED_DIRS."}),
            },
            "hidden": dict(HIDDEN),
        }

    @classmethod
    def IS_CHANGED(cls, video, frame_load_cap=0, skip_first_frames=0, path="", **_hidden):
        # ComfyUI passes the hidden inputs (unique_id) here too; a signature without them raised, and a raising
        # IS_CHANGED counts as changed, so every queue reloaded the video and re-ran everything after it.
        return _file_state(video, path, "video") + f":{frame_load_cap}:{skip_first_frames}"

    @classmethod
    def VALIDATE_INPUTS(cls, path=""):
        return _path_problem(path, "video") or True

    def load(self, video, frame_load_cap, skip_first_frames, path="", unique_id=None):
        import torch

        from ..latentsync.audio.waveform import load_audio
        from ..latentsync.configs import UPSTREAM_FPS
        from ..latentsync.io.image import is_image_path, read_image
        from ..latentsync.io.video import iter_video_frames, probe_video
        from ..latentsync.limits import in_memory_frames_problem
        from . import comfy_compat as cc

        _require_file(video, path, "video")
        file = paths.resolve_input(video, path, "video")
        if is_image_path(file):  # a still: one upright frame, its size checked before decoding
            still = torch.from_numpy(read_image(file)).float().div_(255.0)[None]
            return with_badge((still, silent_audio(1 / UPSTREAM_FPS), UPSTREAM_FPS, 1),
                              "a still image: 1 frame, no audio track (the audio output is silence)", True, unique_id)
        info = probe_video(file)
        fps = float(info.fps)
        count = None if frame_load_cap <= 0 else int(frame_load_cap)
        expected = max(0, info.num_frames - skip_first_frames)
        expected = expected if count is None else min(expected, count)
        problem = in_memory_frames_problem(expected, info.width, info.height, file,
                                           "Set frame_load_cap, or use LatentSync Video File, which streams.")
        if problem:
            raise ValueError(problem)
        progress = cc.Progress(max(1, expected))
        chunks = []
        loaded = 0
        for frames, _ in iter_video_frames(file, start=int(skip_first_frames), count=count, batch=32):
            chunks.append(torch.from_numpy(frames).float().div_(255.0))
            loaded += len(frames)
            progress.set(min(loaded, progress.total))
        if not chunks:
            raise ValueError(f"video: no frames to load from {file} (skip_first_frames={skip_first_frames}, "
                             f"the video has {info.num_frames}).")
        images = torch.cat(chunks)
        del chunks
        start_s = skip_first_frames / fps
        seconds = images.shape[0] / fps
        if info.has_audio:
            wave, rate = load_audio(file)
            a, b = int(round(start_s * rate)), int(round((start_s + seconds) * rate))
            audio = {"waveform": wave[:, a:b].unsqueeze(0).contiguous(), "sample_rate": rate}
            note = None
        else:
            audio = silent_audio(seconds)
            note = f"{os.path.basename(file)} has no audio track: the audio output is silence"
        text = (f"{note} · " if note else "") + f"{images.shape[0]} frames · {fps:.3g} fps"
        return with_badge((images, audio, fps, int(images.shape[0])), text, bool(note), unique_id)


class LatentSyncLoadAudio:
    """Loads the audio of any audio or video file as AUDIO."""

    CATEGORY = "LatentSync/loaders"
    SEARCH_ALIASES = ["Load Audio", "audio loader", "speech", "voice"]
    DESCRIPTION = (
        "Loads an audio file (wav, mp3, flac, ogg/opus, m4a...) or the audio track of a video from ComfyUI's "
        "input folder or a path, at its own sample rate and channels (for ComfyUI versions without Load Audio)."
    )
    FUNCTION = "load"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The audio as {waveform [1, channels, samples], sample_rate}.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": (paths.input_files(AUDIO_SUFFIXES + VIDEO_SUFFIXES, "audio"), {
                    "audio_upload": True,
                    "tooltip": "An audio (or video) file in ComfyUI's input folder (use the upload button, or give a "
                               "path below).",
                }),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": "An audio file path; when set it is used instead of "
                                                              "the input-folder file. It must lie in ComfyUI's "
                                                              "input, output or temp folder, or in a folder the "
                                                              "server's owner lists in LATENTSYNC_ALLOWED_DIRS."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, audio, path=""):
        return _file_state(audio, path, "audio")

    @classmethod
    def VALIDATE_INPUTS(cls, path=""):
        return _path_problem(path, "audio") or True

    def load(self, audio, path=""):
        from ..latentsync.audio.waveform import load_audio

        _require_file(audio, path, "audio")
        wave, rate = load_audio(paths.resolve_input(audio, path, "audio"))
        return ({"waveform": wave.unsqueeze(0).contiguous(), "sample_rate": int(rate)},)


NODE_CLASS_MAPPINGS = {"LatentSyncLoadVideo": LatentSyncLoadVideo, "LatentSyncLoadAudio": LatentSyncLoadAudio}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LatentSyncLoadVideo": "LatentSync Load Video",
    "LatentSyncLoadAudio": "LatentSync Load Audio",
}
