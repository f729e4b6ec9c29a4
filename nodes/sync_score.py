"""Sync scores in the graph: Load SyncNet (SyncNet v2 + S3FD) and LatentSync Sync Score (confidence, distance,
offset, a curve and a report for any frames + audio), thin adapters over ``latentsync.metrics``."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from . import paths
from .checks import fps_input, fps_problem, image_batch_problem
from .types import SYNCNET

log = logging.getLogger(__name__)

OFFICIAL = {"syncnet": "auxiliary/syncnet_v2.model", "s3fd": "auxiliary/sfd_face.pth"}
AUX_SUFFIXES = (".model", ".pth", ".pt", ".safetensors", ".sft")
CURVE_SIZE = (256, 768)  # (height, width) of the curve image


def _aux_files() -> list[str]:
    """Files under auxiliary/ of every models/latentsync folder ComfyUI knows (``.model`` included, which the
    folder's extension filter would hide)."""
    import folder_paths

    try:
        roots = folder_paths.get_folder_paths(paths.FOLDER)
    except KeyError:
        roots = [os.path.join(folder_paths.models_dir, paths.FOLDER)]
    found = set()
    auxiliary = paths.official_names()["auxiliary"]
    for root in roots:
        folder = os.path.join(root, auxiliary)
        if os.path.isdir(folder):
            found |= {f"{auxiliary}/{n}" for n in os.listdir(folder) if n.lower().endswith(AUX_SUFFIXES)}
    return sorted(found)


def _choices(kind: str) -> list[str]:
    return [OFFICIAL[kind]] + [n for n in _aux_files() if n != OFFICIAL[kind]]


def _spec(kind: str, name: str) -> Any:
    from ..latentsync.metrics import files

    if name.replace("\\", "/") == OFFICIAL[kind]:
        return files.SYNCNET_V2 if kind == "syncnet" else files.S3FD_FACE
    return None


def _resolve(names: dict[str, str], allow_download: bool, check_only: bool = False) -> dict[str, str]:
    """Dropdown values -> files on disk, downloading official files when allowed (ModelFilesMissing otherwise)."""
    from ..latentsync import model_files

    found, specs = {}, []
    for kind, name in names.items():
        path = paths.find_file(paths.FOLDER, name)
        if path is not None:
            found[kind] = path
            continue
        spec = _spec(kind, name)
        if spec is None:
            raise FileNotFoundError(f"{kind}: '{name}' is not in models/{paths.FOLDER}. Pick another file or put it there.")
        specs.append((kind, spec))
    if not specs:
        return found
    root = paths.models_root()
    if check_only:
        missing = [(s, s.dest(root)) for _, s in specs if s.find(root) is None]
        if missing and not allow_download:
            raise model_files.ModelFilesMissing(missing, "downloads are turned off (download = off)")
        return found
    got = model_files.ensure_files([s for _, s in specs], root, allow_download=allow_download)
    return {**found, **{kind: got[spec.key] for kind, spec in specs}}



def scorer_inputs() -> dict:
    """The inputs of every node that scores with SyncNet: how faces are found and how long a track must be."""
    return {
        "detect_faces": ("BOOLEAN", {
            "default": True,
            "tooltip": "On: find and track faces with S3FD first (upstream's way, also for aligned faces). "
                       "Off: the frames are face crops already; each is resized to 224 px and scored.",
        }),
        "min_track": ("INT", {
            "default": 50, "min": 5, "max": 10000,
            "tooltip": "A face track needs more than this many detections in one shot (upstream: 50, i.e. "
                       "2 s at 25 fps). Lower it to score shorter clips.",
        }),
    }

class LatentSyncLoadSyncNet:
    """Loads SyncNet v2 and the S3FD face detector that upstream's sync confidence uses."""

    CATEGORY = "LatentSync/loaders"
    SEARCH_ALIASES = ["SyncNet", "lip sync score model"]
    DESCRIPTION = (
        "Loads the networks of upstream LatentSync's lip-sync evaluation: SyncNet v2 (auxiliary/syncnet_v2.model) "
        "and the S3FD face detector (auxiliary/sfd_face.pth) from models/latentsync/auxiliary, downloading the "
        "official files from Hugging Face (ByteDance/LatentSync-1.5) when allowed. Feed it to LatentSync Sync Score. "
        "Both are managed by ComfyUI's memory manager."
    )
    FUNCTION = "load"
    RETURN_TYPES = (SYNCNET,)
    RETURN_NAMES = ("syncnet",)
    OUTPUT_TOOLTIPS = ("SyncNet v2 and S3FD, for LatentSync Sync Score.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "syncnet": (_choices("syncnet"), {
                    "tooltip": "SyncNet v2 weights in models/latentsync/auxiliary (syncnet_v2.model, about 55 MB).",
                }),
                "face_detector": (_choices("s3fd"), {
                    "tooltip": "S3FD face detector weights in models/latentsync/auxiliary (sfd_face.pth, about 90 MB).",
                }),
                "download": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Download the official files when missing (ByteDance/LatentSync-1.5 on Hugging Face). "
                               "Off: only use files already on disk.",
                }),
            }
        }

    # No VALIDATE_INPUTS (as Load LatentSync Model): ComfyUI checks each dropdown against its list, one message on
    # that input; whether a missing official file can be downloaded needs two inputs, and ComfyUI would repeat a
    # VALIDATE_INPUTS message on each input it takes, so `load` checks that first (one message, on this node).

    def load(self, syncnet, face_detector, download):
        from ..latentsync.metrics.s3fd import load_s3fd
        from ..latentsync.metrics.syncnet_v2 import load_syncnet_v2
        from . import comfy_compat as cc
        from .types import LatentSyncSyncNet

        files = _resolve({"syncnet": syncnet, "s3fd": face_detector}, bool(download))
        device, offload = cc.torch_device(), cc.offload_device()
        net = load_syncnet_v2(files["syncnet"])  # float32: the scores are defined in float32
        det = load_s3fd(files["s3fd"])
        log.info("LatentSync: SyncNet %s, S3FD %s", files["syncnet"], files["s3fd"])
        return (LatentSyncSyncNet(
            syncnet=cc.make_patcher(net, load_device=device, offload=offload),
            s3fd=cc.make_patcher(det, load_device=device, offload=offload),
            files={k: os.path.basename(v) for k, v in files.items()},
        ),)


def _curve_image(score: Any) -> Any:
    import torch

    from ..latentsync.configs import UPSTREAM_FPS
    from ..latentsync.metrics.plot import draw_curve

    times, values = score.curve
    image = draw_curve(times, values, title=score.report(), duration=score.num_frames / UPSTREAM_FPS,
                       height=CURVE_SIZE[0], width=CURVE_SIZE[1])
    return torch.from_numpy(image.copy()).float().div_(255.0)[None]


class LatentSyncSyncScore:
    """Upstream's SyncNet sync confidence, distance and offset of any frames + audio."""

    CATEGORY = "LatentSync/tools"
    SEARCH_ALIASES = ["SyncNet", "lip sync score", "LSE-C", "LSE-D", "sync confidence"]
    DESCRIPTION = (
        "Scores how well the lips in the frames move with the audio, exactly as upstream LatentSync's "
        "eval_sync_conf.py: the video is taken at 25 fps, S3FD finds and tracks the faces (cuts split tracks), "
        "each face track is cropped to 224 px and compared with the audio's MFCC by SyncNet v2 at offsets of "
        "+-15 frames. confidence (LSE-C, higher is better; upstream keeps training clips from 3 up), distance "
        "(LSE-D, lower is better) and offset (frames; positive = the audio is early, delay it by that much) are "
        "averaged over tracks. "
        "Works on full frames, on Face Align Crop's aligned faces (upstream scores its aligned data the same way) "
        "or, with detect_faces off, on frames that already are face crops. A clip that cannot be scored (too "
        "short, no face, silent audio) gives NaN scores and a 'not scorable: ...' report instead of an error."
    )
    FUNCTION = "score"
    RETURN_TYPES = ("FLOAT", "FLOAT", "INT", "IMAGE", "STRING")
    RETURN_NAMES = ("confidence", "distance", "offset", "curve", "report")
    OUTPUT_TOOLTIPS = (
        "SyncNet confidence (LSE-C): median minus minimum of the mean distance over offsets; NaN when not scorable.",
        "SyncNet distance (LSE-D): the minimum mean distance; NaN when not scorable.",
        "Audio-video offset in frames at 25 fps (positive: the audio is early; LatentSync Fix Audio Offset delays it "
        "by that much); 0 when not scorable.",
        "Per-window confidence over time (the dashed line is 3, upstream's data filter), with the report on top.",
        "One line: the scores, the number of face tracks and the length, or why the clip is not scorable.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames (any size): full frames, Face Align Crop's "
                                                "aligned faces, or face crops (then turn detect_faces off)."}),
                "audio": ("AUDIO", {"tooltip": "The audio that should match the frames, starting with the first frame "
                                               "(any rate / channels; down-mixed to 16 kHz like upstream)."}),
                "fps": fps_input("Frame rate of the frames (e.g. the fps output of the video loader); other rates "
                                 "are resampled to 25 fps like ffmpeg -r 25."),
                "syncnet": (SYNCNET, {"tooltip": "From LatentSync Load SyncNet."}),
                **scorer_inputs(),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, fps):
        return fps_problem(fps) or True

    def score(self, images, audio, fps, syncnet, detect_faces, min_track):
        from ..latentsync.audio.waveform import audio_from_mapping, to_16k_mono
        from ..latentsync.metrics.score import SyncModels, SyncOptions, score_clip
        from . import comfy_compat as cc

        problem = image_batch_problem(images) or fps_problem(fps)
        if problem:
            raise ValueError(problem)
        waveform, rate = audio_from_mapping(audio)
        wav16 = to_16k_mono(waveform, rate)
        patchers = [syncnet.syncnet] + ([syncnet.s3fd] if detect_faces else [])
        cc.load_models(patchers, force_full_load=True)
        models = SyncModels(cc.module_of(syncnet.syncnet), cc.module_of(syncnet.s3fd) if detect_faces else None)
        progress = cc.Progress(1)
        result = score_clip(images, wav16, float(fps), models, SyncOptions(min_track=int(min_track)),
                            detect=bool(detect_faces), progress=progress.callback())
        report = result.report()
        log.info("LatentSync sync score: %s", report)
        confidence = float(result.confidence) if result.scorable else math.nan
        distance = float(result.distance) if result.scorable else math.nan
        ui = {"scorable": result.scorable, "confidence": None if math.isnan(confidence) else confidence,
              "distance": None if math.isnan(distance) else distance, "offset": int(result.offset),
              "tracks": len(result.tracks), "report": report}
        return {"ui": {"latentsync_sync": [ui], "text": [report]},
                "result": (confidence, distance, int(result.offset), _curve_image(result), report)}


NODE_CLASS_MAPPINGS = {"LatentSyncLoadSyncNet": LatentSyncLoadSyncNet, "LatentSyncSyncScore": LatentSyncSyncScore}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncLoadSyncNet": "LatentSync Load SyncNet",
                              "LatentSyncSyncScore": "LatentSync Sync Score"}
