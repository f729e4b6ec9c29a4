"""The fixed mouth mask (1 = keep, 0 = regenerate) and the masked / reference inputs built from it.

The 256 px mask is drawn from its geometry (a band over the lower face with a rectangular notch left
free under the nose, narrowing in a U towards the chin); other resolutions are OpenCV-Lanczos4 resizes
of the uint8 256 px drawing, as upstream resizes its png (soft edges at 512, ringing clipped to 0..255).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .resize import lanczos4_u8

BASE_RESOLUTION = 256

# Side bands beside the nose notch: rows and columns, inclusive.
_NOTCH_ROWS = (95, 127)
_NOTCH_BANDS = ((9, 77), (178, 246))

# The U over mouth and chin: (row, first masked column, last masked column) at sample rows; rows in
# between interpolate linearly, rounding outwards (the band covers the interpolated edges).
_U_EDGES = (
    (128, 9, 247), (136, 10, 246), (150, 11, 245), (164, 12, 244), (173, 14, 242), (177, 16, 240),
    (180, 18, 238), (184, 20, 235), (188, 22, 232), (192, 26, 230), (197, 30, 226), (203, 35, 221),
    (208, 40, 216), (212, 45, 212), (216, 51, 207), (220, 57, 202), (224, 64, 196), (228, 72, 189),
    (232, 80, 180), (236, 90, 171), (239, 99, 164), (240, 104, 160), (241, 108, 156), (242, 131, 152),
)


@functools.lru_cache(maxsize=1)
def _mask_256_u8() -> torch.Tensor:
    """The 256 x 256 mask drawing as uint8 (255 keep, 0 regenerate)."""
    keep = np.full((BASE_RESOLUTION, BASE_RESOLUTION), 255, dtype=np.uint8)
    top, bottom = _NOTCH_ROWS
    for first, last in _NOTCH_BANDS:
        keep[top : bottom + 1, first : last + 1] = 0
    table = np.asarray(_U_EDGES, dtype=np.float64)
    rows = np.arange(table[0, 0], table[-1, 0] + 1)
    left = np.floor(np.interp(rows, table[:, 0], table[:, 1])).astype(np.int64)
    right = np.ceil(np.interp(rows, table[:, 0], table[:, 2])).astype(np.int64)
    cols = np.arange(BASE_RESOLUTION)
    band = (cols[None, :] >= left[:, None]) & (cols[None, :] <= right[:, None])
    keep[rows.astype(np.int64)] = np.where(band, 0, keep[rows.astype(np.int64)])
    return torch.from_numpy(keep)


@functools.lru_cache(maxsize=8)
def _fixed_mask_cached(resolution: int) -> torch.Tensor:
    drawing = _mask_256_u8()
    if resolution != BASE_RESOLUTION:
        drawing = lanczos4_u8(drawing, (resolution, resolution))
    return drawing.to(torch.float32) / 255.0


def fixed_mask(resolution: int) -> torch.Tensor:
    """Mouth mask ``(R, R)`` float32 for face resolution ``R``: 1 keeps the pixel, 0 marks the mouth to regenerate."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"fixed_mask: resolution must be an int >= 8 (256 or 512 for released models), got {resolution!r}.")
    return _fixed_mask_cached(resolution).clone()


def mask_from_image(image: torch.Tensor | np.ndarray, resolution: int) -> torch.Tensor:
    """A mask from a user-supplied mask image (e.g. upstream's ``mask.png``), prepared the way upstream loads it.

    ``image`` is uint8 ``(H, W)`` or ``(H, W, C)`` (first channel used; white keeps, black regenerates); it is
    Lanczos4-resized to ``R x R`` when needed and scaled to [0, 1]. This is how a user who wants upstream's exact
    bitmap plugs it in; the pack itself ships only the drawn :func:`fixed_mask`.
    """
    plane = torch.as_tensor(np.asarray(image))
    if plane.dtype != torch.uint8 or plane.dim() not in (2, 3):
        raise ValueError(f"mask image must be uint8 (H, W) or (H, W, C), got {plane.dtype} {tuple(plane.shape)}.")
    if plane.dim() == 3:
        plane = plane[..., 0]
    if tuple(plane.shape) != (resolution, resolution):
        plane = lanczos4_u8(plane.contiguous(), (resolution, resolution))
    return plane.to(torch.float32) / 255.0


def load_mask_image(path: str, resolution: int) -> torch.Tensor:
    """:func:`mask_from_image` for an image file (PNG/JPEG...)."""
    from PIL import Image

    with Image.open(path) as im:
        return mask_from_image(np.asarray(im.convert("RGB")), resolution)


def mask_latent(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Downsample the mask to the latent grid ``(1, h, w)`` with nearest sampling (upstream picks every 8th pixel)."""
    if mask.dim() != 2:
        raise ValueError(f"mask_latent: mask must be (R, R), got {tuple(mask.shape)}.")
    h, w = int(latent_hw[0]), int(latent_hw[1])
    source = mask if mask.is_floating_point() else mask.float()
    return F.interpolate(source[None, None], size=(h, w), mode="nearest")[0]


def prepare_face_inputs(
    faces: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build the U-Net's image inputs from aligned uint8 faces ``(F, 3, R, R)`` and the ``(R, R)`` mask.

    Returns ``(reference, masked, latent_mask)``: the faces in [-1, 1] float32, the same with the mouth
    zeroed (mid-grey), and the mask on the ``R/8`` latent grid ``(1, R/8, R/8)``.
    """
    if faces.dtype != torch.uint8 or faces.dim() != 4 or faces.shape[1] != 3:
        raise ValueError(
            f"prepare_face_inputs: faces must be uint8 (F, 3, R, R), got {faces.dtype} {tuple(faces.shape)}."
        )
    size = faces.shape[-2:]
    if tuple(mask.shape) != tuple(size):
        raise ValueError(
            f"prepare_face_inputs: mask {tuple(mask.shape)} does not match the faces' size {tuple(size)}; "
            "build it with fixed_mask(R) for the same resolution."
        )
    if size[0] % 8 or size[1] % 8:
        raise ValueError(f"prepare_face_inputs: face size {tuple(size)} must be a multiple of 8 (VAE downsampling).")
    keep = mask.to(device=faces.device, dtype=torch.float32)
    reference = (faces.to(torch.float32) / 255.0 - 0.5) / 0.5
    masked = reference * keep
    return reference, masked, mask_latent(keep, (size[0] // 8, size[1] // 8))


__all__ = ["BASE_RESOLUTION", "fixed_mask", "load_mask_image", "mask_from_image", "mask_latent", "prepare_face_inputs"]
