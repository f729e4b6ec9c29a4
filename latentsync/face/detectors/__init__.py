"""Face detector backends and the factory that picks one.

* ``insightface``: upstream's buffalo_l models (SCRFD + 2d106det) through onnxruntime; needs two ONNX files
  in the models folder (``insightface_onnx.INSIGHTFACE_FILES`` says which and where from).
* ``dlib``: offline, weights shipped by PyPI packages (``pip install dlib-bin face-recognition-models``).
* ``auto``: insightface when its files are present (and onnxruntime is installed), otherwise dlib.

Nothing heavy is imported until a detector is built.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from ...configs import DETECTOR_NAMES
from .base import DetectorUnavailableError, Face, FaceDetector, FaceFilter, ModelFile, largest_face, to_rgb_uint8

log = logging.getLogger(__name__)

__all__ = [
    "DETECTOR_NAMES",
    "DetectorUnavailableError",
    "Face",
    "FaceDetector",
    "FaceFilter",
    "ModelFile",
    "create_detector",
    "detector_status",
    "largest_face",
    "to_rgb_uint8",
]


def _build_insightface(models_dirs: Iterable[str | os.PathLike], device: str, options: dict) -> FaceDetector:
    from .insightface_onnx import InsightFaceDetector

    return InsightFaceDetector.from_models_dirs(models_dirs, device=device, **options)


def _build_dlib(options: dict) -> FaceDetector:
    from .dlib_hog import DlibDetector

    return DlibDetector(**options)


def create_detector(
    name: str = "auto",
    *,
    models_dirs: Iterable[str | os.PathLike] = (),
    device: str = "auto",
    **options,
) -> FaceDetector:
    """Build the detector ``name`` (one of :data:`DETECTOR_NAMES`).

    ``models_dirs`` are ComfyUI ``models`` roots (or folders) searched for the insightface files;
    ``device`` picks onnxruntime's CUDA provider when available; ``options`` go to the detector's constructor.
    ``auto`` logs which detector it chose; when neither can run the error lists what to install or download.
    """
    models_dirs = list(models_dirs)
    if name not in DETECTOR_NAMES:
        raise ValueError(f"Unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}.")
    if name == "insightface":
        return _build_insightface(models_dirs, device, options)
    if name == "dlib":
        return _build_dlib(options)
    try:
        detector = _build_insightface(models_dirs, device, options)
    except DetectorUnavailableError as insightface_error:
        try:
            detector = _build_dlib(options)
        except DetectorUnavailableError as dlib_error:
            raise DetectorUnavailableError(
                "No face detector can run here.\n"
                f"Option 1 (upstream's detector):\n{insightface_error}\n"
                f"Option 2 (offline detector): {dlib_error}"
            ) from dlib_error
        log.info("Face detector: %s (insightface files not found: using the offline detector).", detector.describe())
        return detector
    log.info("Face detector: %s.", detector.describe())
    return detector


def detector_status(models_dirs: Iterable[str | os.PathLike] = ()) -> dict[str, str | None]:
    """For each concrete detector: ``None`` when it can be built here, else the reason it cannot (cheap checks)."""
    import importlib.util

    from .insightface_onnx import find_insightface_files

    status: dict[str, str | None] = {}
    try:
        find_insightface_files(list(models_dirs))
        status["insightface"] = None if importlib.util.find_spec("onnxruntime") else "onnxruntime is not installed"
    except DetectorUnavailableError as exc:
        status["insightface"] = str(exc)
    missing = [p for p in ("dlib", "face_recognition_models") if importlib.util.find_spec(p) is None]
    status["dlib"] = None if not missing else "pip install dlib-bin face-recognition-models"
    return status
