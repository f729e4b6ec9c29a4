"""LatentSyncFaceAlignCrop: detect and track one face per frame, align it to LatentSync's face crop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .checks import fps_input, fps_problem, image_batch_problem
from .types import FACES, MODEL, SYNCNET

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BATCH = 16
REPORT_MAX_INDICES = 64


def frames_to_uint8(images: "torch.Tensor", device: Any = None) -> "torch.Tensor":
    """IMAGE (F,H,W,C) float 0..1, C in 1/3/4 -> uint8 (F,H,W,3) (alpha dropped, grey repeated)."""
    import torch

    x = images
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    x = (x[..., :3].float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.to(device) if device is not None else x  # convert first: uint8 is a quarter of the transfer


def get_detector(model: Any, name: str) -> Any:
    """The detector for a node choice (the registry's names; saved workflows store them), created once per loaded
    model and reused across runs."""
    from ..latentsync.face.detector_registry import canonical
    from ..latentsync.face.detectors import create_detector
    from . import comfy_compat as cc

    try:
        name = canonical(name)
    except ValueError as exc:
        raise ValueError(f"detector: {exc}") from None

    def create() -> Any:
        from ..latentsync.model_files import ensure_detector_files

        ensure_detector_files(name, list(model.models_dirs), allow_download=model.allow_download)
        device = "cuda" if cc.torch_device().type == "cuda" else "cpu"
        return create_detector(name, models_dirs=list(model.models_dirs), device=device)

    return model.detector(name, create)


def _ui_report(track: Any, detector: Any, num_frames: int) -> dict:
    missing = [int(i) for i in (~_as_bool(track.found)).nonzero().flatten().tolist()]
    cuts = [int(i) for i in _as_bool(track.resets).nonzero().flatten().tolist()]
    return {
        "detector": str(getattr(detector, "name", track.detector)),
        "detector_version": str(getattr(detector, "version", "")),
        "frames": num_frames,
        "faces_found": num_frames - len(missing),
        "missing_frames": missing[:REPORT_MAX_INDICES],
        "missing_count": len(missing),
        "cuts": cuts[:REPORT_MAX_INDICES],
    }


def _as_bool(x: Any) -> "torch.Tensor":
    import torch

    return torch.as_tensor(x).to(torch.bool)


SPEAKER_INDEX = -2  # face_index value for "the speaker by sync"


def _speaker_plan(images: Any, syncnet: Any, audio: Any, fps: float) -> Any:
    """face_index -2: the per-shot speaker plan (latentsync.metrics.speaker) of these frames and this audio."""
    from ..latentsync.audio.waveform import audio_from_mapping, to_16k_mono
    from ..latentsync.metrics.score import SyncOptions
    from ..latentsync.metrics.speaker import SPEAKER_MIN_TRACK, choose_speakers
    from . import comfy_compat as cc

    if syncnet is None or audio is None:
        raise ValueError("face_index -2 (the speaker) needs the syncnet input (LatentSync Load SyncNet, which reads "
                         "auxiliary/syncnet_v2.model and auxiliary/sfd_face.pth) and the audio input connected; "
                         "connect them or pick another face_index.")
    problem = fps_problem(fps)
    if problem:
        raise ValueError(problem)
    waveform, rate = audio_from_mapping(audio)
    cc.load_models([syncnet.syncnet, syncnet.s3fd], force_full_load=True)
    small_side = min(int(images.shape[1]), int(images.shape[2]))
    options = SyncOptions(min_track=SPEAKER_MIN_TRACK, detect_scale=min(1.0, max(0.25, 128.0 / small_side)))
    return choose_speakers(images, to_16k_mono(waveform, rate), float(fps), cc.module_of(syncnet.syncnet),
                           cc.module_of(syncnet.s3fd), options)


class LatentSyncFaceAlignCrop:
    """Detects faces, keeps one face per frame (stable identity), aligns it to LatentSync's template crop."""

    CATEGORY = "LatentSync/stages"
    SEARCH_ALIASES = ["face detect", "face crop", "face align"]
    DESCRIPTION = (
        "Finds the face to lip-sync in every frame, follows the same person across frames and warps it to "
        "LatentSync's aligned square crop (256 px for 1.5, 512 px for 1.6). Frames without a usable face are "
        "kept and passed through unchanged at the end (reported in the node and the log), never a crash. "
        "Outputs the aligned faces (you may restore or edit them before encoding), the alignment for pasting "
        "back, and the mouth mask (1 = the region LatentSync regenerates)."
    )
    FUNCTION = "align"
    RETURN_TYPES = ("IMAGE", FACES, "MASK")
    RETURN_NAMES = ("aligned_faces", "faces", "mouth_mask")
    OUTPUT_TOOLTIPS = (
        "Aligned face crops (frames, R, R, 3); frames without a face hold a neutral crop of the frame.",
        "Per-frame alignment, face-found flags and detection report; connect to Masked VAE Encode and "
        "VAE Decode Composite.",
        "The fixed mouth mask at face resolution, (1, R, R): 1 = regenerated by LatentSync, 0 = kept.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        from ..latentsync.options import node_input  # read here, not at import: importing the pack stays light

        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames (any size; alpha and grey are accepted)."}),
                "model": (MODEL, {"tooltip": "From Load LatentSync Model: sets the face resolution and where "
                                             "detector files are looked up."}),
                "detector": node_input(
                    "detector", tooltip="auto: insightface (upstream's detector) when its files are in "
                                        "models/insightface/models/buffalo_l or models/latentsync/auxiliary, else the "
                                        "offline dlib detector (pip install dlib-bin face-recognition-models). "
                                        "The node reports which one ran."),
                "face_index": node_input(
                    "face_index", min=SPEAKER_INDEX,
                    tooltip="Which face to lip-sync: -1 = the largest (as upstream); 0, 1, ... = faces counted left "
                            "to right where several are first seen; -2 = the speaker: per shot the face whose lips "
                            "move with the audio (SyncNet; connect syncnet, audio and fps). The choice is tracked "
                            "across frames."),
                "smooth": node_input("smooth"),
            },
            "optional": {
                "syncnet": (SYNCNET, {"tooltip": "For face_index -2 (speaker): from LatentSync Load SyncNet."}),
                "audio": ("AUDIO", {"tooltip": "For face_index -2 (speaker): the speech the frames go with."}),
                "fps": fps_input("For face_index -2 (speaker): the frames' rate (25 when not connected).",
                                 forceInput=True),
            },
        }

    def align(self, images, model, detector, face_index, smooth, syncnet=None, audio=None, fps=None):
        import numpy as np
        import torch

        from ..latentsync.face import align as face_align
        from ..latentsync.face.mask import fixed_mask
        from ..latentsync.face.track import frame_signatures, track_faces
        from ..latentsync.pipeline import stages
        from . import comfy_compat as cc
        from .types import LatentSyncFaces

        problem = image_batch_problem(images)
        if problem:
            raise ValueError(problem)
        num, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
        resolution = int(model.resolution)
        det = get_detector(model, detector)
        progress = cc.Progress(2 * num)

        detections, signatures = [], []
        for start in range(0, num, BATCH):
            batch = frames_to_uint8(images[start:start + BATCH]).cpu().numpy()
            detections.extend(det.detect(batch))
            signatures.append(frame_signatures(batch))
            progress.set(min(start + BATCH, num))
        choice = "largest" if face_index == -1 else int(face_index)
        if face_index == SPEAKER_INDEX:
            from ..latentsync.configs import UPSTREAM_FPS

            choice = _speaker_plan(images, syncnet, audio, UPSTREAM_FPS if fps is None else fps)
        track = track_faces(detections, (height, width), face_index=choice,
                            signatures=np.concatenate(signatures), detector=str(getattr(det, "name", detector)))
        points = torch.as_tensor(track.points, dtype=torch.float32)
        resets = _as_bool(track.resets)
        matrices = stages.face_matrices(points, resets, resolution, smooth=bool(smooth))  # as the streaming runner

        device = cc.torch_device()
        out = cc.intermediate_device()
        aligned = []
        for start in range(0, num, BATCH):
            frames = frames_to_uint8(images[start:start + BATCH], device)
            faces = face_align.warp_faces(frames, matrices[start:start + BATCH].to(device), resolution)
            aligned.append(faces.permute(0, 2, 3, 1).to(out))
            progress.set(num + min(start + BATCH, num))
        aligned_image = torch.cat(aligned).float().div_(255.0)

        mask = fixed_mask(resolution)
        report = _ui_report(track, det, num)
        if face_index == SPEAKER_INDEX:
            report["speaker"] = choice.report()
            log.info("LatentSync speaker: %s", "; ".join(report["speaker"]))
        if report["missing_count"]:
            log.warning("LatentSync: no usable face in %d of %d frames (passed through unchanged): %s%s",
                        report["missing_count"], num, report["missing_frames"][:20],
                        " ..." if report["missing_count"] > 20 else "")
        faces = LatentSyncFaces(
            matrices=matrices.float().cpu(), found=_as_bool(track.found).cpu(), resets=resets.cpu(), points=points,
            frame_size=(height, width), resolution=resolution, detector=report["detector"], report=report,
            images=images, mask=mask,
        )
        mouth = (1.0 - mask).unsqueeze(0).to(out)
        return {"ui": {"latentsync_faces": [report]}, "result": (aligned_image, faces, mouth)}


NODE_CLASS_MAPPINGS = {"LatentSyncFaceAlignCrop": LatentSyncFaceAlignCrop}
NODE_DISPLAY_NAME_MAPPINGS = {"LatentSyncFaceAlignCrop": "LatentSync Face Align Crop"}
