"""Still images: size checked from the header before decoding, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..limits import frame_limit_text, frame_size_problem
from .errors import MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# EXIF orientations 5-8 store the picture turned a quarter: its upright size is the stored one transposed.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name says still image (by extension)."""
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


def _open(path: str | os.PathLike) -> Any:
    """Open (header only) with Pillow, every failure a MediaError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:  # so large that Pillow itself refuses it (> 178 megapixels)
        raise MediaError(f"{path}: {exc} The limit here is {frame_limit_text()}. Scale it down first (e.g. to "
                         "3840x2160).") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"{path} is not a readable image ({exc}). Give a png, jpg or webp file.") from None


def _upright_size(image: Any) -> tuple[int, int]:
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, TypeError):  # a damaged EXIF block: decoding will tell
        orientation = 1
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def probe_image(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image as displayed (EXIF orientation applied), read from its header only.

    Raises MediaError when the file is not an image or is larger than the frame limit (see ``latentsync.limits``).
    """
    with _open(path) as image:
        width, height = _upright_size(image)
    problem = frame_size_problem(width, height, os.fspath(path))
    if problem:
        raise MediaError(problem)
    return width, height


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image as displayed, RGB uint8 (H, W, 3): size checked before decoding, EXIF orientation applied."""
    from PIL import ImageOps

    with _open(path) as image:
        problem = frame_size_problem(*_upright_size(image), os.fspath(path))
        if problem:
            raise MediaError(problem)
        try:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged pixel data
            raise MediaError(f"{path}: the image cannot be decoded ({exc}); the file is damaged or truncated. "
                             "Export it again.") from None
