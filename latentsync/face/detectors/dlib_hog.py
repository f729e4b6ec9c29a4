"""Offline detector: dlib's HOG face detector + the 68-point shape predictor shipped by ``face-recognition-models``.

Both packages come from PyPI as ready wheels / plain data for Python 3.10-3.13 on Windows, Linux and macOS
(``pip install dlib-bin face-recognition-models``), need no compiler, no download at run time, and pin neither
numpy, protobuf nor OpenCV. dlib runs on the CPU; frames are processed on a small thread pool.

The three alignment points come from the 68-point (iBUG 300-W) layout: the eyebrow centres are the means
of points 17-21 and 22-26, which are the same five points per brow that upstream averages from insightface's
106 landmarks ([43, 48, 49, 51, 50] and [101..105] map onto them); the nose centre is the mean of 29 and 30
(lower nose bridge and tip), calibrated against the MediaPipe reference points of demo1 (see docs/detectors.md).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._ops import alignment_points, resize_bilinear_u8
from .base import DetectorUnavailableError, Face, FaceDetector, FaceFilter

log = logging.getLogger(__name__)

PIP_COMMAND = "pip install dlib-bin face-recognition-models"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
LICENSE_NOTE = (
    "dlib's 68-point predictor was trained on iBUG 300-W, whose images are licensed for non-commercial research only."
)

LEFT_BROW_68 = (17, 18, 19, 20, 21)
RIGHT_BROW_68 = (22, 23, 24, 25, 26)
NOSE_68 = (29, 30)

# HOG boxes are square and tighter than SCRFD's (forehead and chin cut), so upstream's 50x80 minimum would
# drop faces SCRFD keeps; the HOG window itself is 80 px at the detection scale.
DLIB_FILTER = FaceFilter(min_width=40, min_height=40, min_aspect=0.2, max_aspect=1.5, min_score=None)


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise DetectorUnavailableError(
            f"The offline face detector needs dlib, which is not installed: {PIP_COMMAND}"
        ) from exc
    return dlib


def build(models_dirs: list, device: str, **options) -> "DlibDetector":
    """The registry's hook: dlib runs on the CPU and needs no models folder."""
    return DlibDetector(**options)


def status(models_dirs: list) -> str | None:
    """The registry's hook: None when dlib and face-recognition-models are installed, else the pip command."""
    missing = [p for p in ("dlib", "face_recognition_models") if importlib.util.find_spec(p) is None]
    return None if not missing else PIP_COMMAND


def default_predictor_path() -> Path:
    """Where ``face-recognition-models`` keeps the 68-point model (found without importing the package,
    whose ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            "The offline face detector needs the package face-recognition-models (dlib's landmark model): "
            f"{PIP_COMMAND}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise DetectorUnavailableError(f"{path} is missing; reinstall the package: {PIP_COMMAND} --force-reinstall")
    return path


def points3_from_68(landmarks: np.ndarray, *, upstream_rounding: bool = True) -> np.ndarray:
    """Alignment points ``(..., 3, 2)`` from 68 landmarks ``(..., 68, 2)`` (rounded like upstream by default)."""
    return alignment_points(landmarks, (LEFT_BROW_68, RIGHT_BROW_68, NOSE_68), round_landmarks=False,
                            round_points=upstream_rounding)


class DlibDetector(FaceDetector):
    """HOG face boxes on a downscaled frame, 68 landmarks on the full-resolution frame."""

    name = "dlib"

    def __init__(
        self,
        predictor_path: str | os.PathLike | None = None,
        *,
        det_size: int = 640,
        upsample_fallback: bool = True,
        score_threshold: float = 0.0,
        face_filter: FaceFilter | None = DLIB_FILTER,
        largest_only: bool = False,
        upstream_rounding: bool = True,
        threads: int | None = None,
    ) -> None:
        super().__init__(face_filter=face_filter, largest_only=largest_only)
        if det_size < 80:
            raise ValueError(f"det_size must be at least 80 px (the HOG window), got {det_size}.")
        dlib = _import_dlib()
        path = Path(predictor_path) if predictor_path is not None else default_predictor_path()
        if not path.is_file():
            raise DetectorUnavailableError(f"dlib landmark model not found: {path}. {PIP_COMMAND}")
        self._new_hog = dlib.get_frontal_face_detector
        self._local = threading.local()  # a HOG detector keeps scratch buffers: one per thread
        try:
            self._predictor = dlib.shape_predictor(os.fspath(path))
        except RuntimeError as exc:
            raise DetectorUnavailableError(f"Could not read the dlib landmark model {path}: {exc}") from exc
        self._rect = dlib.rectangle
        self.det_size = det_size
        self.upsample_fallback = upsample_fallback
        self.score_threshold = score_threshold
        self.upstream_rounding = upstream_rounding
        self.threads = max(1, threads if threads is not None else min(4, os.cpu_count() or 1))
        self.version = f"dlib {dlib.__version__} HOG + {path.name}"

    def _boxes(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HOG boxes ``(N, 4)`` in frame pixels and their scores, searching a frame shrunk to ``det_size``."""
        h, w = frame.shape[:2]
        shrink = min(1.0, self.det_size / max(h, w))
        small, sx, sy = frame, 1.0, 1.0
        if shrink < 1.0:
            size = (max(1, round(h * shrink)), max(1, round(w * shrink)))
            small = np.ascontiguousarray(resize_bilinear_u8(frame, size, antialias=True)[0].numpy())
            sy, sx = size[0] / h, size[1] / w
        hog = getattr(self._local, "hog", None)
        if hog is None:
            hog = self._local.hog = self._new_hog()
        rects, scores, _ = hog.run(small, 0, self.score_threshold)
        if not len(rects) and self.upsample_fallback:
            rects, scores, _ = hog.run(small, 1, self.score_threshold)  # smaller faces: search at 2x
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
        boxes /= np.array([sx, sy, sx, sy], np.float32)
        return boxes, np.asarray(scores, np.float32)

    def _faces_in(self, frame: np.ndarray) -> list[Face]:
        boxes, scores = self._boxes(frame)
        faces = []
        for box, score in zip(boxes, scores):
            rect = self._rect(*(int(round(v)) for v in box))
            shape = self._predictor(frame, rect)
            lmk = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            faces.append(
                Face(
                    box=box,
                    score=float(score),
                    points3=points3_from_68(lmk, upstream_rounding=self.upstream_rounding),
                    landmarks=lmk,
                )
            )
        order = np.argsort(-np.asarray([f.score for f in faces]), kind="stable")
        return [faces[i] for i in order]

    def _detect_rgb(self, frames: np.ndarray) -> list[list[Face]]:
        if self.threads == 1 or len(frames) == 1:
            return [self._faces_in(f) for f in frames]
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(self._faces_in, frames))
