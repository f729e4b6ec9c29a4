"""What every face detector returns, the input checks at the API boundary and the shared face filters.

A detector turns a batch of RGB frames into, per frame, every usable face it sees: a box, a confidence, the
three LatentSync alignment points (image-left eyebrow centre, image-right eyebrow centre, nose centre) and,
when the model has them, all of its landmarks. Choosing one face per frame across a video is ``track``'s job.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ...model_files import ModelFile  # noqa: F401  (the one ModelFile class; re-exported for detectors)


class DetectorUnavailableError(RuntimeError):
    """A detector cannot run here: its model files or its Python package are missing."""


@dataclass
class Face:
    """One detected face in frame pixel coordinates.

    ``box`` is ``(x1, y1, x2, y2)``; ``points3`` is ``(3, 2)`` = image-left eyebrow centre, image-right
    eyebrow centre, nose centre (the points LatentSync aligns on); ``landmarks`` is ``(K, 2)`` or None.
    """

    box: np.ndarray
    score: float
    points3: np.ndarray
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


@dataclass(frozen=True)
class FaceFilter:
    """Rejects implausible detections, as upstream does before it picks the largest face.

    Upstream's values (``face_detector.py``): width < 50 or height < 80 px, width/height outside
    [0.2, 1.5], score < 0.5. Sizes are measured on the box truncated to integers, as upstream does.
    ``None`` disables a test.
    """

    min_width: float | None = 50
    min_height: float | None = 80
    min_aspect: float | None = 0.2
    max_aspect: float | None = 1.5
    min_score: float | None = 0.5

    def accepts(self, face: Face) -> bool:
        x1, y1, x2, y2 = (int(v) for v in face.box)  # upstream: bbox.astype(np.int_)
        w, h = x2 - x1, y2 - y1
        if h <= 0 or w <= 0:
            return False
        if (self.min_width is not None and w < self.min_width) or (self.min_height is not None and h < self.min_height):
            return False
        aspect = w / h
        if (self.max_aspect is not None and aspect > self.max_aspect) or (
            self.min_aspect is not None and aspect < self.min_aspect
        ):
            return False
        return self.min_score is None or face.score >= self.min_score

    def apply(self, faces: Sequence[Face]) -> list[Face]:
        return [f for f in faces if self.accepts(f)]


NO_FILTER = FaceFilter(None, None, None, None, None)


def box_area(box: np.ndarray) -> int:
    """Area of a box the way upstream compares faces (integer-truncated corners)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return (x2 - x1) * (y2 - y1)


def largest_face(faces: Sequence[Face]) -> Face | None:
    """Upstream's pick: the face with the largest integer box area; the earlier face wins a tie."""
    best, best_area = None, 0
    for face in faces:
        area = box_area(face.box)
        if area > best_area:
            best, best_area = face, area
    return best


class FaceDetector(abc.ABC):
    """Interface of every detector backend; see :class:`Face` for what one detection carries."""

    name: str = "detector"
    version: str = "0"

    def __init__(self, face_filter: FaceFilter | None = None, largest_only: bool = False) -> None:
        self.face_filter = face_filter if face_filter is not None else NO_FILTER
        self.largest_only = largest_only

    def detect(self, frames: Any) -> list[list[Face]]:
        """Faces in each frame of ``frames`` (uint8 ``(F, H, W, C)``, ``(H, W, C)`` or grey; numpy or torch).

        Per frame the faces that pass ``face_filter`` (largest first), or only the largest with ``largest_only``.
        """
        batch = to_rgb_uint8(frames)
        result = []
        for faces in self._detect_rgb(batch):
            kept = self.face_filter.apply(faces)
            kept.sort(key=lambda f: box_area(f.box), reverse=True)  # stable: score order breaks ties
            if self.largest_only:
                kept = kept[:1]
            result.append(kept)
        return result

    @abc.abstractmethod
    def _detect_rgb(self, frames: np.ndarray) -> list[list[Face]]:
        """All raw detections of a checked ``(F, H, W, 3)`` uint8 RGB batch (C-contiguous, CPU)."""

    def describe(self) -> str:
        return f"{self.name} {self.version}"


def to_rgb_uint8(frames: Any, name: str = "frames") -> np.ndarray:
    """Check and convert detector input to a C-contiguous ``(F, H, W, 3)`` uint8 RGB numpy array.

    Accepts numpy arrays or torch tensors (any device), one image or a batch, 1 (grey), 3 (RGB) or
    4 (RGBA: alpha dropped) channels, uint8 or float in [0, 1] (ComfyUI IMAGE values, rounded).
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor of images, got {type(frames).__name__}.")
    arr = frames
    if arr.ndim == 2:  # one grey image
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        # (H, W, C) with a channel axis of 1/3/4, otherwise a batch of grey images (F, H, W)
        arr = arr[None] if arr.shape[-1] in (1, 3, 4) else arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{name} must be images shaped (F, H, W, C) or (H, W, C) with C in 1/3/4 channels, got shape "
            f"{tuple(frames.shape)}. Pass frames channel-last (ComfyUI IMAGE layout)."
        )
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"{name} has an empty image dimension: shape {tuple(frames.shape)}.")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(f"{name} has integer values outside 0..255 (dtype {arr.dtype}); pass uint8 images.")
            arr = arr.astype(np.uint8)
        else:
            raise TypeError(f"{name} has dtype {arr.dtype}; pass uint8 (0..255) or float (0..1) images.")
    channels = arr.shape[-1]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif channels == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)
