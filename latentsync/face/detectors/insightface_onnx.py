"""Upstream's face detector without the insightface package: buffalo_l SCRFD + 2d106det through onnxruntime.

Reproduces what ``insightface.app.FaceAnalysis(allowed_modules=["detection", "landmark_2d_106"])`` with
``prepare(det_size=(512, 512))`` does for LatentSync:

* ``det_10g.onnx`` (SCRFD-10G): the frame is shrunk to fit 512x512 keeping its aspect ratio, pasted top-left
  on a black canvas, normalised ``(x - 127.5) / 128``; the 9 outputs (scores, box distances, 5 keypoints
  for strides 8/16/32, two anchors per cell) are decoded, thresholded at 0.5 and merged by NMS (IoU 0.4).
* ``2d106det.onnx``: per face a 192x192 crop centred on the box, scaled so that 1.5x the longer box side
  fills it; raw 0..255 input (the graph normalises); output in [-1, 1] crop units mapped back to the frame.
* The three alignment points: means of landmarks [43, 48, 49, 51, 50], [101..105] and [74, 77, 83, 86]
  of the integer-rounded 106 landmarks, rounded again (upstream ``image_processor.py``).

Upstream feeds RGB frames into insightface, which expects BGR and swaps channels, so the networks see BGR:
``channel_order="upstream"`` (default) reproduces that, ``"rgb"`` feeds the networks what they were trained on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._ops import alignment_points, invert_affine, resize_bilinear_u8, similarity_crop_matrix, warp_crop_u8
from .base import DetectorUnavailableError, Face, FaceDetector, FaceFilter, ModelFile

log = logging.getLogger(__name__)

_HF_REPO = "public-data/insightface"
_HF_REVISION = "33c1063c49c785b7652d3fd529f86fa4f149392b"


def _hf_file(name: str, sha256: str, size: int) -> ModelFile:
    return ModelFile(f"insightface-{name}", _HF_REPO, f"models/buffalo_l/{name}", MODEL_SUBDIRS[0],
                     revision=_HF_REVISION, sha256=sha256, size=size, note=LICENSE_NOTE)


OFFICIAL_ZIP_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
LICENSE_NOTE = "insightface buffalo_l weights: non-commercial research use only (insightface model licence)."

# Folders (relative to a ComfyUI ``models`` directory) searched in order; the first is shared with other packs.
MODEL_SUBDIRS: tuple[str, ...] = (
    "insightface/models/buffalo_l",
    "latentsync/auxiliary",
    "latentsync/auxiliary/models/buffalo_l",
)

# The two buffalo_l files upstream uses (insightface v0.7 release "buffalo_l.zip", mirrored on Hugging Face).
DETECTION_FILE = _hf_file("det_10g.onnx", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91", 16923827)
LANDMARK_FILE = _hf_file("2d106det.onnx", "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf", 5030888)
INSIGHTFACE_FILES: tuple[ModelFile, ...] = (DETECTION_FILE, LANDMARK_FILE)

UPSTREAM_FILTER = FaceFilter()  # w < 50, h < 80, w/h outside [0.2, 1.5], score < 0.5 are dropped

LEFT_BROW_106 = (43, 48, 49, 51, 50)
RIGHT_BROW_106 = (101, 102, 103, 104, 105)
NOSE_106 = (74, 77, 83, 86)


def candidate_dirs(models_dirs: Iterable[str | os.PathLike]) -> list[Path]:
    """Every folder where the buffalo_l files may live, for each given models root (or a folder itself)."""
    dirs: list[Path] = []
    for root in models_dirs:
        root = Path(root)
        dirs.append(root)
        dirs.extend(root / sub for sub in MODEL_SUBDIRS)
    return dirs


def find_insightface_files(models_dirs: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Paths of ``det_10g.onnx`` and ``2d106det.onnx`` (both from the same folder, first match wins).

    Raises :class:`DetectorUnavailableError` naming each missing file, its source and where to put it.
    """
    dirs = candidate_dirs(models_dirs)
    for folder in dirs:
        found = {f.name: folder / f.name for f in INSIGHTFACE_FILES}
        if all(p.is_file() for p in found.values()):
            return found
    raise DetectorUnavailableError(missing_files_message(models_dirs))


def model_files() -> tuple[ModelFile, ...]:
    """The registry's hook: the downloadable buffalo_l files."""
    return INSIGHTFACE_FILES


find_files = find_insightface_files  # the registry's hook: where the files are, or DetectorUnavailableError


def build(models_dirs: list, device: str, **options) -> "InsightFaceDetector":
    """The registry's hook: the detector from the first folder under ``models_dirs`` with both files."""
    return InsightFaceDetector.from_models_dirs(models_dirs, device=device, **options)


def status(models_dirs: list) -> str | None:
    """The registry's hook: None when the files and onnxruntime are there, else what is missing."""
    import importlib.util

    try:
        find_insightface_files(models_dirs)
    except DetectorUnavailableError as exc:
        return str(exc)
    return None if importlib.util.find_spec("onnxruntime") else "onnxruntime is not installed"


def missing_files_message(models_dirs: Iterable[str | os.PathLike]) -> str:
    roots = [Path(d) for d in models_dirs]
    where = [str(r / MODEL_SUBDIRS[0]) for r in roots] or [f"<ComfyUI>/models/{MODEL_SUBDIRS[0]}"]
    lines = ["The insightface face detector (upstream's) needs these files, which were not found:"]
    for f in INSIGHTFACE_FILES:
        lines.append(f"  - {f.name} ({f.size:,} bytes, sha256 {f.sha256}) from {f.url}")
    lines.append(f"Put both in one of: {', '.join(where)}")
    lines.append(f"  (also accepted: models/{MODEL_SUBDIRS[1]}/). Official source: {OFFICIAL_ZIP_URL}. {LICENSE_NOTE}")
    lines.append("Or use the offline detector (detector='offline'), which needs no model download.")
    return "\n".join(lines)


def _import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DetectorUnavailableError(
            "The insightface detector runs its ONNX models with onnxruntime, which is not installed: "
            "pip install onnxruntime (or onnxruntime-gpu on a CUDA machine)."
        ) from exc
    return ort


def select_providers(device: str = "auto") -> list:
    """CUDA execution provider first (on the GPU ``device`` names) when available and wanted, CPU always last."""
    ort = _import_onnxruntime()
    available = ort.get_available_providers()
    wanted = str(device)
    if wanted != "cpu" and "CUDAExecutionProvider" in available:
        index = int(wanted.split(":", 1)[1]) if wanted.startswith("cuda:") else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if wanted.startswith("cuda"):
        log.info(
            "onnxruntime has no CUDA execution provider here (providers: %s); face detection runs on the CPU.",
            available,
        )
    return ["CPUExecutionProvider"]


def _session(path: Path, providers: Sequence[str]):
    ort = _import_onnxruntime()
    try:
        return ort.InferenceSession(os.fspath(path), providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise DetectorUnavailableError(
            f"Could not load ONNX model {path}: {exc}. "
            "The file is truncated or corrupt; delete it and download it again."
        ) from exc


# ----------------------------------------------------------------------------------------------- SCRFD decoding
def scrfd_layout(num_outputs: int) -> tuple[tuple[int, ...], int, bool]:
    """(strides, anchors per cell, has keypoints) for an SCRFD export with ``num_outputs`` outputs."""
    layouts = {
        6: ((8, 16, 32), 2, False),
        9: ((8, 16, 32), 2, True),
        10: ((8, 16, 32, 64, 128), 1, False),
        15: ((8, 16, 32, 64, 128), 1, True),
    }
    if num_outputs not in layouts:
        raise ValueError(f"Not an SCRFD detector: it has {num_outputs} outputs (expected 6, 9, 10 or 15).")
    return layouts[num_outputs]


def anchor_centers(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """``(H/s * W/s * anchors, 2)`` anchor centres (x, y) in input pixels, row-major cells, anchors adjacent."""
    rows, cols = height // stride, width // stride
    ys, xs = np.divmod(np.arange(rows * cols), cols)
    centers = np.stack([xs, ys], axis=1).astype(np.float32) * stride
    return np.repeat(centers, anchors, axis=0)


def decode_scrfd(
    outputs: Sequence[np.ndarray], input_hw: tuple[int, int], score_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Raw SCRFD outputs of one image -> candidate boxes ``(N, 4)``, scores ``(N,)``, keypoints ``(N, 5, 2)``.

    Boxes and keypoints are in network input pixels, sorted by descending score (stable), before NMS.
    """
    strides, anchors, with_kps = scrfd_layout(len(outputs))
    levels = len(strides)
    boxes, scores, kps = [], [], []
    for level, stride in enumerate(strides):
        score = np.asarray(outputs[level]).reshape(-1)
        dist = np.asarray(outputs[level + levels]).reshape(-1, 4) * stride
        centers = anchor_centers(input_hw[0], input_hw[1], stride, anchors)
        if len(centers) != len(score):
            raise ValueError(
                f"SCRFD stride {stride}: {len(score)} scores for a {input_hw} input, expected {len(centers)}."
            )
        keep = score >= score_threshold
        c = centers[keep]
        d = dist[keep]
        boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
        scores.append(score[keep])
        if with_kps:
            offsets = np.asarray(outputs[level + 2 * levels]).reshape(len(score), -1, 2)[keep] * stride
            kps.append(c[:, None, :] + offsets)
    all_scores = np.concatenate(scores).astype(np.float32)
    order = np.argsort(-all_scores, kind="stable")
    all_boxes = np.concatenate(boxes).astype(np.float32)[order]
    all_kps = np.concatenate(kps).astype(np.float32)[order] if with_kps else None
    return all_boxes, all_scores[order], all_kps


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Greedy non-maximum suppression, insightface's convention (inclusive pixel areas ``(x2-x1+1)*(y2-y1+1)``).

    Returns indices of the kept boxes, highest score first; a box is dropped when its IoU with an
    already kept box exceeds ``iou_threshold``.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float32)
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(0.0, rb - lt + 1)
    inter = wh[..., 0] * wh[..., 1]
    iou = inter / (area[:, None] + area[None, :] - inter)
    alive = np.ones(len(b), bool)
    kept = []
    for i in range(len(b)):
        if alive[i]:
            kept.append(i)
            alive &= ~(iou[i] > iou_threshold)
    return order[np.asarray(kept, np.int64)]


def letterbox_size(height: int, width: int, det_hw: tuple[int, int]) -> tuple[int, int, float]:
    """Size ``(h, w)`` the frame is resized to inside the ``det_hw`` canvas, and the scale (insightface rule)."""
    det_h, det_w = det_hw
    if height / width > det_h / det_w:
        new_h = det_h
        new_w = int(new_h / (height / width))
    else:
        new_w = det_w
        new_h = int(new_w * (height / width))
    return new_h, new_w, new_h / height


class ScrfdModel:
    """SCRFD face detector session (``det_10g.onnx``): frame -> boxes, scores, 5 keypoints in frame pixels."""

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str],
        *,
        det_size: int | tuple[int, int] = 512,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        bgr: bool = True,
    ) -> None:
        self.session = _session(Path(path), providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise DetectorUnavailableError(f"{path} is not an SCRFD detector: it has {len(inputs)} inputs.")
        scrfd_layout(len(outputs))  # validates the output count
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]
        size = (det_size, det_size) if isinstance(det_size, int) else tuple(det_size)
        if size[0] % 32 or size[1] % 32:
            raise ValueError(f"det_size must be a multiple of 32 (got {size}).")
        self.det_hw = (int(size[0]), int(size[1]))
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.bgr = bgr

    def blob(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Network input ``(1, 3, H, W)`` float32 for one RGB uint8 frame, and the frame -> input scale."""
        h, w = frame.shape[:2]
        new_h, new_w, scale = letterbox_size(h, w, self.det_hw)
        resized = resize_bilinear_u8(frame, (new_h, new_w))[0].numpy()
        canvas = np.zeros((*self.det_hw, 3), np.uint8)
        canvas[:new_h, :new_w] = resized
        if self.bgr:
            canvas = canvas[..., ::-1]
        x = (canvas.astype(np.float32) - 127.5) / 128.0
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), scale

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Detections of one RGB uint8 frame after NMS: boxes ``(N, 4)``, scores ``(N,)``, keypoints ``(N, 5, 2)``."""
        blob, scale = self.blob(frame)
        outs = self.session.run(self.output_names, {self.input_name: blob})
        if outs[0].ndim == 3:  # exports with a leading batch axis
            outs = [o[0] for o in outs]
        boxes, scores, kps = decode_scrfd(outs, self.det_hw, self.score_threshold)
        boxes /= scale
        if kps is not None:
            kps /= scale
        keep = nms(boxes, scores, self.nms_iou)
        return boxes[keep], scores[keep], (kps[keep] if kps is not None else None)


class Landmark106Model:
    """2D landmark regressor session (``2d106det.onnx``): crops around boxes -> ``(N, K, 2)`` frame landmarks."""

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str],
        *,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        bgr: bool = True,
    ) -> None:
        self.session = _session(Path(path), providers)
        inp = self.session.get_inputs()
        outs = self.session.get_outputs()
        if len(inp) != 1 or len(outs) != 1:
            raise DetectorUnavailableError(f"{path} is not a 2D landmark model (expects 1 input and 1 output).")
        shape = inp[0].shape
        if len(shape) != 4 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise DetectorUnavailableError(f"{path}: expected a square NCHW input, got shape {shape}.")
        out_shape = outs[0].shape
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != 212):
            raise DetectorUnavailableError(f"{path}: expected 106 2D landmarks (output (N, 212)), got {out_shape}.")
        self.input_name = inp[0].name
        self.output_name = outs[0].name
        self.size = int(shape[2])
        self.batched = not (isinstance(shape[0], int) and shape[0] == 1)
        self.input_mean = input_mean
        self.input_std = input_std
        self.bgr = bgr

    def crop_matrices(self, boxes: np.ndarray, rotation_deg: np.ndarray | float = 0.0) -> np.ndarray:
        """Frame -> crop matrices: crop centred on each box, 1.5x its longer side across ``size`` pixels."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        center = (boxes[:, :2] + boxes[:, 2:]) / 2
        longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return similarity_crop_matrix(center, self.size / (longer * 1.5), rotation_deg, self.size)

    def crops(self, frame: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """Network input ``(N, 3, S, S)`` float32 for the faces of one RGB frame."""
        tiles = np.stack([warp_crop_u8(frame, m, self.size) for m in matrices])
        if self.bgr:
            tiles = tiles[..., ::-1]
        x = (tiles.astype(np.float32) - self.input_mean) / self.input_std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def run(self, blob: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, 2K)`` for a stack of crops, in one call when the model takes batches."""
        if len(blob) == 0:
            return np.zeros((0, 0), np.float32)
        if self.batched:
            return self.session.run([self.output_name], {self.input_name: blob})[0]
        return np.concatenate([self.session.run([self.output_name], {self.input_name: b[None]})[0] for b in blob])

    def to_frame(self, raw: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """Map outputs in [-1, 1] crop units back to frame pixels: ``(N, K, 2)`` float32."""
        pts = raw.reshape(len(raw), -1, 2).astype(np.float32)
        pts = (pts + 1.0) * (self.size // 2)
        inv = invert_affine(matrices).astype(np.float32)
        return np.einsum("nij,nkj->nki", inv[:, :, :2], pts) + inv[:, None, :, 2]


def points3_from_106(landmarks: np.ndarray, *, upstream_rounding: bool = True) -> np.ndarray:
    """The three alignment points ``(..., 3, 2)`` from 106 landmarks ``(..., 106, 2)``.

    With ``upstream_rounding`` the landmarks are rounded to integers first and the means rounded again,
    exactly as upstream; otherwise plain float means.
    """
    return alignment_points(landmarks, (LEFT_BROW_106, RIGHT_BROW_106, NOSE_106), round_landmarks=upstream_rounding,
                            round_points=upstream_rounding)


class InsightFaceDetector(FaceDetector):
    """Upstream-exact detector: SCRFD boxes + 106 landmarks -> :class:`Face` per detection."""

    name = "insightface"

    def __init__(
        self,
        detection_path: str | os.PathLike,
        landmark_path: str | os.PathLike,
        *,
        device: str = "auto",
        det_size: int | tuple[int, int] = 512,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        face_filter: FaceFilter | None = UPSTREAM_FILTER,
        largest_only: bool = False,
        channel_order: str = "upstream",
        upstream_rounding: bool = True,
        roll_from_keypoints: bool = False,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__(face_filter=face_filter, largest_only=largest_only)
        if channel_order not in ("upstream", "rgb"):
            raise ValueError(
                f"channel_order must be 'upstream' (networks see BGR, as upstream) or 'rgb', got {channel_order!r}."
            )
        bgr = channel_order == "upstream"
        self.providers = list(providers) if providers else select_providers(device)
        self.detector = ScrfdModel(
            detection_path, self.providers, det_size=det_size, score_threshold=score_threshold, nms_iou=nms_iou, bgr=bgr
        )
        self.landmarker = Landmark106Model(landmark_path, self.providers, bgr=bgr)
        self.upstream_rounding = upstream_rounding
        self.roll_from_keypoints = roll_from_keypoints
        ort = _import_onnxruntime()
        running = self.detector.session.get_providers()[0]
        self.version = f"buffalo_l det_10g+2d106det (onnxruntime {ort.__version__}, {running})"

    @classmethod
    def from_models_dirs(cls, models_dirs: Iterable[str | os.PathLike], **kwargs) -> "InsightFaceDetector":
        """Build from the first folder under ``models_dirs`` that holds both buffalo_l files."""
        files = find_insightface_files(models_dirs)
        return cls(files[DETECTION_FILE.name], files[LANDMARK_FILE.name], **kwargs)

    def _roll(self, kps: np.ndarray | None, count: int) -> np.ndarray:
        if not self.roll_from_keypoints or kps is None:
            return np.zeros(count)
        eye_vec = kps[:, 1] - kps[:, 0]
        return np.degrees(np.arctan2(eye_vec[:, 1], eye_vec[:, 0]))

    def _detect_rgb(self, frames: np.ndarray) -> list[list[Face]]:
        per_frame, blobs, mats = [], [], []
        for frame in frames:
            boxes, scores, kps = self.detector(frame)
            m = self.landmarker.crop_matrices(boxes, -self._roll(kps, len(boxes)))
            per_frame.append((boxes, scores, m))
            if len(boxes):
                blobs.append(self.landmarker.crops(frame, m))
                mats.append(m)
        landmarks = iter(())
        if blobs:
            raw = self.landmarker.run(np.concatenate(blobs))
            landmarks = iter(self.landmarker.to_frame(raw, np.concatenate(mats)))
        result = []
        for boxes, scores, _ in per_frame:
            faces = []
            for box, score in zip(boxes, scores):
                lmk = next(landmarks)
                faces.append(
                    Face(
                        box=box.astype(np.float32),
                        score=float(score),
                        points3=points3_from_106(lmk, upstream_rounding=self.upstream_rounding),
                        landmarks=lmk,
                    )
                )
            result.append(faces)
        return result
