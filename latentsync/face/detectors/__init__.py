"""Face detector backends and the factory that picks one; the detectors are listed in ``face/detector_registry``.

* ``insightface``: upstream's buffalo_l models (SCRFD + 2d106det) through onnxruntime; needs two ONNX files
  in the models folder (``insightface_onnx.INSIGHTFACE_FILES`` says which and where from).
* ``offline`` (also accepted: ``dlib``): dlib, weights shipped by PyPI packages
  (``pip install dlib-bin face-recognition-models``).
* ``auto``: the first registered detector that can run (insightface when its files are present and onnxruntime
  is installed), otherwise the next.

Nothing heavy is imported until a detector is built.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from ..detector_registry import DETECTORS, accepted, canonical
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


DETECTOR_NAMES: tuple[str, ...] = accepted()  # auto, each detector, then the older names still accepted


def create_detector(
    name: str = "auto",
    *,
    models_dirs: Iterable[str | os.PathLike] = (),
    device: str = "auto",
    **options,
) -> FaceDetector:
    """Build the detector ``name`` (one of :data:`DETECTOR_NAMES`; ``dlib`` is the offline detector's old name).

    ``models_dirs`` are ComfyUI ``models`` roots (or folders) searched for the insightface files;
    ``device`` picks onnxruntime's CUDA provider when available; ``options`` go to the detector's constructor.
    ``auto`` tries the registered detectors in order and logs which one it chose; when none can run the error
    lists what to install or download for each.
    """
    models_dirs = list(models_dirs)
    key = canonical(name)  # ValueError naming the choices
    if key != "auto":
        return DETECTORS[key].build(models_dirs, device, **options)
    errors = []
    for n, entry in enumerate(DETECTORS.values()):
        try:
            detector = entry.build(models_dirs, device, **options)
        except DetectorUnavailableError as exc:
            errors.append(f"Option {len(errors) + 1} ({entry.display}):\n{exc}")
            continue
        why = f" ({', '.join(e.name for e in list(DETECTORS.values())[:n])} cannot run here)" if n else ""
        log.info("Face detector: %s%s.", detector.describe(), why)
        return detector
    raise DetectorUnavailableError("No face detector can run here.\n" + "\n".join(errors))


def detector_status(models_dirs: Iterable[str | os.PathLike] = ()) -> dict[str, str | None]:
    """For each registered detector (by its one name): ``None`` when it can be built here, else the reason it
    cannot (cheap checks)."""
    return {name: entry.status(list(models_dirs)) for name, entry in DETECTORS.items()}
