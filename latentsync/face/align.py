"""Face alignment: three points -> similarity matrix (with upstream's bias smoothing) -> aligned face crops.

Geometry follows upstream LatentSync: a 3:4 crop (210 x 280 at 256 px, scaled with the resolution) in
which both eyebrow centres and the nose centre land on a fixed template; the crop is then squashed to
R x R with OpenCV-Lanczos4. The warp (:mod:`.warp`, kornia's ``warp_affine`` semantics) is evaluated only on
the frame region the crop needs, so full-resolution frames are never converted to float.
"""

from __future__ import annotations

import numpy as np
import torch

from .resize import lanczos4_u8
from .warp import (
    WARP_FILL,
    bilinear_sample,
    gather_windows,
    roi_extent,
    sample_positions,
    unit_sampling_matrix,
    validate_matrices,
)

BASE_RESOLUTION = 256
_TEMPLATE_UNITS = ((17.0, 20.0), (58.0, 20.0), (37.5, 40.0))  # image-left eyebrow, right eyebrow, nose
_CROP_UNITS = (75, 100)  # crop width, height before scaling
_BIAS_KEEP = 0.2  # weight of the previous bias in the smoothing filter


def _ratio(resolution: int) -> float:
    return resolution / BASE_RESOLUTION * 2.8


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an int >= 8 (256 for LatentSync 1.5, 512 for 1.6), got {resolution!r}.")
    return resolution


def crop_size(resolution: int) -> tuple[int, int]:
    """Width and height of the aligned crop in pixels before it is resized to ``R x R`` (210 x 280 at 256)."""
    ratio = _ratio(_check_resolution(resolution))
    return int(_CROP_UNITS[0] * ratio), int(_CROP_UNITS[1] * ratio)


def face_template(resolution: int) -> torch.Tensor:
    """Where the three alignment points land in the crop, ``(3, 2)`` float32 pixel (x, y)."""
    ratio = _ratio(_check_resolution(resolution))
    return torch.from_numpy(np.asarray(_TEMPLATE_UNITS, dtype=np.float64) * ratio).to(torch.float32)


def _similarity_one(points: torch.Tensor, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame of :func:`similarity_matrix`: ``points (3, 2)`` -> ``(matrix (2, 3), bias (2,))``.

    The operations, their shapes and their order are upstream's (2-D tensors, one frame at a time), not a
    batched equivalent: CPU BLAS/LAPACK libraries pick their kernels by shape and by processor, so only the
    same calls round the same way on every machine.
    """
    src_mean = torch.mean(points, dim=0)
    dst_mean = torch.mean(template, dim=0)
    src_c = points - src_mean
    dst_c = template - dst_mean
    src_scale = torch.std(src_c)
    dst_scale = torch.std(dst_c)
    src_n = src_c / src_scale
    dst_n = dst_c / dst_scale
    u, _, vh = torch.linalg.svd(torch.matmul(src_n.T, dst_n), full_matrices=False)
    v = vh.mH
    rot = torch.matmul(v, u.T)
    if torch.det(rot) < 0:  # a reflection: flip the least significant axis of V
        v = v.clone()
        v[:, -1] = -v[:, -1]
        rot = torch.matmul(v, u.T)
    scale = dst_scale / src_scale
    shift = dst_mean.reshape(2, 1) - scale * torch.matmul(rot, src_mean.reshape(2, 1))
    return torch.cat((scale * rot, shift), dim=1), dst_n[2] - src_n[2]


def similarity_matrix(points: torch.Tensor, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``points`` onto ``template``.

    ``points (F, 3, 2)`` frame pixels, ``template (3, 2)``. Each point set is centred and divided by one
    scalar (the unbiased std of its six coordinates); the rotation comes from the SVD of the normalised
    cross-covariance with reflections removed. Returns ``matrices (F, 2, 3)`` (frame -> crop pixels,
    unsmoothed) and ``bias (F, 2)``: template minus points for the nose, in normalised units, which the
    smoothing filter adds to the translation. Computed in float32 on the CPU, frame by frame as upstream.
    """
    pts = points.detach().to(device="cpu", dtype=torch.float32)
    tpl = template.detach().to(device="cpu", dtype=torch.float32)
    if pts.shape[0] == 0:
        return torch.empty((0, 2, 3)), torch.empty((0, 2))
    degenerate = [i for i in range(pts.shape[0]) if not bool(torch.std(pts[i] - torch.mean(pts[i], dim=0)) > 0)]
    if degenerate:
        raise ValueError(
            f"similarity_matrix: the three points coincide in frame(s) {degenerate[:10]}; no alignment possible."
        )
    pairs = [_similarity_one(pts[i], tpl) for i in range(pts.shape[0])]
    return torch.stack([m for m, _ in pairs]), torch.stack([b for _, b in pairs])


class AlignmentSmoother:
    """Upstream's translation filter: ``bias = 0.2 * previous + 0.8 * current``, state kept across calls.

    The first frame after construction or :meth:`reset` (e.g. at a shot cut) is unsmoothed, so feeding a
    video in windows gives the same matrices as feeding it at once.
    """

    def __init__(self) -> None:
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the previous bias (call at a cut or when a new video starts)."""
        self.state = None

    def __call__(self, bias: torch.Tensor, resets: torch.Tensor | None = None) -> torch.Tensor:
        """Filter raw biases ``(F, 2)`` in frame order; ``resets (F,)`` restarts the filter at those frames."""
        raw = bias.detach().to(device="cpu", dtype=torch.float32)
        flags = [False] * raw.shape[0] if resets is None else [bool(r) for r in resets.reshape(-1).tolist()]
        if len(flags) != raw.shape[0]:
            raise ValueError(f"AlignmentSmoother: resets has {len(flags)} entries for {raw.shape[0]} frames.")
        out = torch.empty_like(raw)
        state = self.state
        for i in range(raw.shape[0]):
            state = raw[i] if (state is None or flags[i]) else state * _BIAS_KEEP + raw[i] * (1 - _BIAS_KEEP)
            out[i] = state
        self.state = None if state is None else state.clone()
        return out.to(bias.device)


def matrices_from_points(
    points: torch.Tensor,
    resolution: int,
    smoother: AlignmentSmoother | None = None,
    resets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Alignment matrices ``(F, 2, 3)`` float32 (frame pixels -> crop pixels) from points ``(F, 3, 2)``.

    Points are (left eyebrow centre, right eyebrow centre, nose centre) in frame pixels. Pass the same
    ``smoother`` to consecutive calls of one video; without one, the filter starts fresh at frame 0.
    """
    if points.dim() != 3 or tuple(points.shape[1:]) != (3, 2):
        raise ValueError(f"matrices_from_points: points must be (F, 3, 2), got {tuple(points.shape)}.")
    pts = points.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(pts).all()):
        bad = torch.nonzero(~torch.isfinite(pts).flatten(1).all(dim=1)).flatten().tolist()
        raise ValueError(
            f"matrices_from_points: non-finite points in frame(s) {bad[:10]}; fill missing faces before aligning."
        )
    resets = None if resets is None else torch.as_tensor(resets)
    if resets is not None and resets.numel() != pts.shape[0]:
        raise ValueError(f"matrices_from_points: resets has {resets.numel()} entries for {pts.shape[0]} frames.")
    matrices, bias = similarity_matrix(pts, face_template(resolution))
    smoother = AlignmentSmoother() if smoother is None else smoother
    matrices[:, :, 2] = matrices[:, :, 2] + smoother(bias, resets)
    return matrices.to(points.device)


# ----------------------------------------------------------------------------------------------------
# Aligned crops


def _as_rgb_frames(frames: torch.Tensor, name: str) -> torch.Tensor:
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{name}: frames must be uint8 (F, H, W, C) with C in {{1, 3, 4}}, got {frames.dtype} {tuple(frames.shape)}; "
            "convert float IMAGE tensors with (x * 255).round().to(torch.uint8)."
        )
    if frames.shape[-1] == 4:
        return frames[..., :3]
    if frames.shape[-1] == 1:
        return frames.expand(*frames.shape[:3], 3)
    return frames


def warp_crops(frames: torch.Tensor, matrices: torch.Tensor, resolution: int, *, device=None) -> torch.Tensor:
    """Raw aligned crops ``(F, 3, crop_h, crop_w)`` uint8 (bilinear, fill 127, truncated like upstream).

    Only the frame region under each crop is read (and moved to ``device`` when that differs from the
    frames' device); computation happens on ``device`` (default: the frames' device).
    """
    rgb = _as_rgb_frames(frames, "warp_crops")
    count, height, width = rgb.shape[0], rgb.shape[1], rgb.shape[2]
    mats = validate_matrices(matrices, count, "warp_crops")
    crop_w, crop_h = crop_size(resolution)
    device = torch.device(device) if device is not None else rgb.device
    if count == 0:
        return torch.empty((0, 3, crop_h, crop_w), dtype=torch.uint8, device=device)

    theta = unit_sampling_matrix(mats, (height, width), (crop_h, crop_w))
    rows = torch.arange(crop_h, device=device).expand(count, crop_h)
    cols = torch.arange(crop_w, device=device).expand(count, crop_w)
    x, y = sample_positions(theta, (crop_h, crop_w), (height, width), rows, cols)

    # Frame window holding every tap of the crop (one small host sync per batch).
    bounds = torch.stack([x.flatten(1).amin(1), x.flatten(1).amax(1), y.flatten(1).amin(1), y.flatten(1).amax(1)], 1)
    bounds = bounds.clamp(-1e6, 1e6).cpu()
    xs, win_w = roi_extent(torch.floor(bounds[:, 0]).long(), torch.floor(bounds[:, 1]).long() + 1, width)
    ys, win_h = roi_extent(torch.floor(bounds[:, 2]).long(), torch.floor(bounds[:, 3]).long() + 1, height)
    window = gather_windows(rgb, torch.arange(count), ys, xs, (win_h, win_w)).to(device)

    # The window lies inside the frame and holds every in-frame tap, so "outside the window" == "outside the frame".
    x_local = x - xs.to(device=device, dtype=torch.float32)[:, None, None]
    y_local = y - ys.to(device=device, dtype=torch.float32)[:, None, None]
    values, coverage = bilinear_sample(window, x_local, y_local)
    crops = values + (1 - coverage)[..., None] * WARP_FILL
    return crops.to(torch.uint8).permute(0, 3, 1, 2).contiguous()


_ALIGN_CROP_PIXELS = 1 << 21  # crop pixels per part (~100 MB of float32 temporaries; 35 faces at 256 px, 8 at 512)


def warp_faces(frames: torch.Tensor, matrices: torch.Tensor, resolution: int, *, device=None) -> torch.Tensor:
    """Aligned faces ``(F, 3, R, R)`` uint8: the kornia-style crop squashed to ``R x R`` with OpenCV Lanczos4.

    Frames are uint8 ``(F, H, W, C)`` (C = 3; RGBA drops alpha, grey is repeated) on any device; the work
    runs in float32 on ``device`` (default: the frames' device), reading only the regions under the crops.
    """
    rgb = _as_rgb_frames(frames, "warp_faces")
    mats = validate_matrices(matrices, rgb.shape[0], "warp_faces")
    crop_w, crop_h = crop_size(resolution)
    step = max(1, _ALIGN_CROP_PIXELS // (crop_w * crop_h))  # per frame, so parts give the whole batch's result
    parts = [lanczos4_u8(warp_crops(rgb[i:i + step], mats[i:i + step], resolution, device=device),
                         (resolution, resolution)) for i in range(0, max(1, rgb.shape[0]), step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


__all__ = [
    "AlignmentSmoother",
    "crop_size",
    "face_template",
    "matrices_from_points",
    "similarity_matrix",
    "warp_crops",
    "warp_faces",
]
