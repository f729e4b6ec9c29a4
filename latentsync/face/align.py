"""Face alignment: three points -> similarity matrix (with upstream's bias smoothing) -> aligned face crops.

Geometry follows upstream LatentSync: a 3:4 crop (210 x 280 at 256 px, scaled with the resolution) in
which both eyebrow centres and the nose centre land on a fixed template; the crop is then squashed to
R x R with OpenCV-Lanczos4. Warps follow kornia's ``warp_affine`` (bilinear, ``align_corners=True``,
pixel-coordinate matrices, outside pixels read as the fill value), evaluated only on the frame region
the crop needs, so full-resolution frames are never converted to float.
"""

from __future__ import annotations

import numpy as np
import torch

from .resize import lanczos4_u8

BASE_RESOLUTION = 256
_TEMPLATE_UNITS = ((17.0, 20.0), (58.0, 20.0), (37.5, 40.0))  # image-left eyebrow, right eyebrow, nose
_CROP_UNITS = (75, 100)  # crop width, height before scaling
_BIAS_KEEP = 0.2  # weight of the previous bias in the smoothing filter
WARP_FILL = 127.0
_BLAS_MIN_ROWS = 128  # sampling grids at least this tall go through the BLAS, as affine_grid's always do


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
# Warping helpers shared with restore.py


def _pixel_to_unit(height: int, width: int) -> torch.Tensor:
    """3x3 float32 map from pixel coordinates to [-1, 1] with corner pixels at -1 and 1."""
    norm = torch.eye(3, dtype=torch.float32)
    norm[0, 0] = torch.tensor(2.0, dtype=torch.float32) / max(width - 1.0, 1e-14)
    norm[1, 1] = torch.tensor(2.0, dtype=torch.float32) / max(height - 1.0, 1e-14)
    norm[0, 2] = -1.0
    norm[1, 2] = -1.0
    return norm


def _homogeneous(matrices: torch.Tensor) -> torch.Tensor:
    last = torch.tensor([0.0, 0.0, 1.0], dtype=matrices.dtype).expand(matrices.shape[0], 1, 3)
    return torch.cat([matrices, last], dim=1)


def unit_sampling_matrix(dst_from_src: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """``(N, 2, 3)`` float32 map from output unit coordinates to input unit coordinates (CPU).

    Computed per item with kornia's own operations and shapes (normalise the ``(1, 3, 3)`` pixel matrix,
    invert), so the sampling matrices equal ``kornia.geometry.warp_affine``'s on any processor.
    """
    mats = _homogeneous(dst_from_src.detach().to(device="cpu", dtype=torch.float32))
    src_norm = _pixel_to_unit(*src_hw)[None]
    dst_norm = _pixel_to_unit(*dst_hw)[None]
    src_from_unit = torch.linalg.inv(src_norm)
    units = [torch.linalg.inv(dst_norm @ (mats[i : i + 1] @ src_from_unit)) for i in range(mats.shape[0])]
    if not units:
        return torch.empty((0, 2, 3), dtype=torch.float32)
    return torch.cat(units)[:, :2]


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(N, 2, 3)`` affine matrices (float32, as kornia's ``invert_affine_transform``)."""
    return torch.linalg.inv(_homogeneous(matrices.to(torch.float32)))[:, :2]


def sample_positions(
    unit_matrix: torch.Tensor,
    dst_hw: tuple[int, int],
    src_hw: tuple[int, int],
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input pixel positions ``(x, y)``, each ``(N, h, w)`` float32, for output pixels ``rows (N, h) x cols (N, w)``.

    ``unit_matrix`` comes from :func:`unit_sampling_matrix`; ``dst_hw`` is the full output size the unit
    coordinates refer to, so any sub-rectangle of the output can be evaluated on its own.
    """
    device = rows.device
    theta = unit_matrix.to(device=device, dtype=torch.float32)
    unit_x = torch.linspace(-1.0, 1.0, dst_hw[1], device=device, dtype=torch.float32)[cols]
    unit_y = torch.linspace(-1.0, 1.0, dst_hw[0], device=device, dtype=torch.float32)[rows]
    count, height, width = theta.shape[0], unit_y.shape[1], unit_x.shape[1]
    if device.type == "cpu":
        # affine_grid's own product (unit grid x theta^T through the CPU BLAS): the library rounds it by
        # processor, and only the same call gives kornia's sample positions bit for bit everywhere.
        base = torch.stack(
            [unit_x[:, None, :].expand(count, height, width), unit_y[:, :, None].expand(count, height, width),
             torch.ones((count, height, width), dtype=torch.float32)],
            dim=-1,
        ).view(count, height * width, 3)
        if height * width < _BLAS_MIN_ROWS:  # torch multiplies tiny matrices in its own loop, not the BLAS
            base = torch.cat([base, base.new_zeros(count, _BLAS_MIN_ROWS - height * width, 3)], dim=1)
        grid = base.bmm(theta.transpose(1, 2))[:, : height * width].view(count, height, width, 2)
        gx, gy = grid[..., 0], grid[..., 1]
    else:
        # Elementwise on accelerators, so TF32 settings can never touch the coordinates; the products are
        # formed on the row/column vectors and only the sums are image-sized.
        ux = unit_x[:, None, :]
        uy = unit_y[:, :, None]
        t = theta[:, :, :, None, None]
        gx = (t[:, 0, 0] * ux + t[:, 0, 1] * uy) + t[:, 0, 2]
        gy = (t[:, 1, 0] * ux + t[:, 1, 1] * uy) + t[:, 1, 2]
    x = (gx + 1) / 2 * (src_hw[1] - 1)
    y = (gy + 1) / 2 * (src_hw[0] - 1)
    return x, y


def _fused_multiply_add_matches_grid_sample(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch's own CPU ``grid_sample`` accumulates the four taps with fused multiply-adds.

    Its vectorised (AVX2/AVX-512) float32 kernel does; reproducing that rounding makes our windowed warp equal
    to ``grid_sample`` (hence kornia's ``warp_affine``) bit for bit, so the uint8 truncation that follows lands
    on the same levels as upstream's.
    """
    if device.type != "cpu" or dtype != torch.float32:
        return False
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")()
    return capability != "DEFAULT"


def bilinear_sample(
    image: torch.Tensor, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps of ``image (N, H, W, C)`` (any dtype, any strides) at positions ``x, y (N, h, w)``.

    Returns ``values (N, h, w, C)`` in ``dtype`` (taps outside the image count as zero) and ``coverage
    (N, h, w)``, the summed weight of the taps inside (1 in the interior, 0 far outside) in the positions'
    dtype, so ``values + (1 - coverage) * fill`` is a warp with a constant fill. The taps are accumulated in
    ``grid_sample``'s order (nw, ne, sw, se) and, where torch's CPU kernel fuses them, with the same rounding.
    """
    n, height, width, channels = image.shape
    flat = image.reshape(n * height * width, channels)  # windows are small: a copy here is cheap
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    east = x - x0
    south = y - y0
    west = 1 - east
    north = 1 - south
    xi = x0.to(torch.int64)
    yi = y0.to(torch.int64)
    base = torch.arange(n, device=image.device).view(n, 1, 1) * (height * width)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    fused = _fused_multiply_add_matches_grid_sample(x.device, dtype)
    values = None
    coverage = None
    for dy, wy in ((0, north), (1, south)):
        for dx, wx in ((0, west), (1, east)):
            tx = xi + dx
            ty = yi + dy
            inside = (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
            weight = torch.where(inside, wy * wx, zero)
            flat_index = base + ty.clamp(0, height - 1) * width + tx.clamp(0, width - 1)
            taps = flat.index_select(0, flat_index.reshape(-1)).view(*x.shape, channels).to(dtype)
            w = weight[..., None].to(dtype)
            if values is None:
                values = taps * w
            elif fused:  # one rounding for product + sum: exact in float64, then rounded once to float32
                values = (taps.double() * w.double() + values.double()).to(dtype)
            else:
                values = values + taps * w
            coverage = weight if coverage is None else coverage + weight
    return values, coverage


def roi_extent(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """Common window length and per-item starts that cover ``[lo, hi]`` (inclusive, int64) clipped to ``[0, size)``.

    Returns ``(starts (N,), length)``; every window lies inside ``[0, size)``.
    """
    lo_c = lo.clamp(0, size - 1)
    hi_c = hi.clamp(0, size - 1)
    length = int((hi_c - lo_c + 1).clamp(min=1).max().item())
    length = min(max(length, 1), size)
    starts = lo_c.clamp(max=size - length)
    return starts, length


def gather_windows(images: torch.Tensor, index: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, hw: tuple[int, int]):
    """Windows ``(N, h, w, C)`` of ``images (F, H, W, C)``: item ``i`` is frame ``index[i]`` from ``(y0[i], x0[i])``."""
    dev = images.device
    rows = y0.to(dev)[:, None] + torch.arange(hw[0], device=dev)
    cols = x0.to(dev)[:, None] + torch.arange(hw[1], device=dev)
    return images[index.to(dev)[:, None, None], rows[:, :, None], cols[:, None, :]]


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


def validate_matrices(matrices: torch.Tensor, count: int, name: str) -> torch.Tensor:
    """Matrices ``(count, 2, 3)`` as finite float32 on the CPU, or a ValueError naming ``name``."""
    if matrices.dim() != 3 or tuple(matrices.shape[1:]) != (2, 3) or matrices.shape[0] != count:
        raise ValueError(f"{name}: matrices must be ({count}, 2, 3), got {tuple(matrices.shape)}.")
    mats = matrices.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(mats).all()):
        raise ValueError(f"{name}: matrices contain NaN/inf; build them with matrices_from_points.")
    return mats


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


def warp_faces(frames: torch.Tensor, matrices: torch.Tensor, resolution: int, *, device=None) -> torch.Tensor:
    """Aligned faces ``(F, 3, R, R)`` uint8: the kornia-style crop squashed to ``R x R`` with OpenCV Lanczos4.

    Frames are uint8 ``(F, H, W, C)`` (C = 3; RGBA drops alpha, grey is repeated) on any device; the work
    runs in float32 on ``device`` (default: the frames' device), reading only the regions under the crops.
    """
    crops = warp_crops(frames, matrices, resolution, device=device)
    return lanczos4_u8(crops, (resolution, resolution))


__all__ = [
    "AlignmentSmoother",
    "WARP_FILL",
    "bilinear_sample",
    "crop_size",
    "face_template",
    "invert_affine",
    "matrices_from_points",
    "sample_positions",
    "similarity_matrix",
    "unit_sampling_matrix",
    "warp_crops",
    "warp_faces",
]
