"""Affine warps with kornia's ``warp_affine`` semantics, evaluated on windows: the forward warp of face crops
(align.py) and the inverse warp of generated faces into their frames (restore.py).

Bilinear sampling with ``align_corners=True`` on pixel-coordinate matrices, outside pixels read as a fill value.
Sampling matrices, grids and tap sums are computed with kornia's / torch's own operations and rounding (see
ARCHITECTURE.md, "exact on any processor"), so the truncated uint8 results equal upstream's bit for bit.
"""

from __future__ import annotations

import torch

WARP_FILL = 127.0
_BLAS_MIN_ROWS = 128  # sampling grids at least this tall go through the BLAS, as affine_grid's always do


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


def validate_matrices(matrices: torch.Tensor, count: int, name: str) -> torch.Tensor:
    """Matrices ``(count, 2, 3)`` as finite float32 on the CPU, or a ValueError naming ``name``."""
    if matrices.dim() != 3 or tuple(matrices.shape[1:]) != (2, 3) or matrices.shape[0] != count:
        raise ValueError(f"{name}: matrices must be ({count}, 2, 3), got {tuple(matrices.shape)}.")
    mats = matrices.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(mats).all()):
        raise ValueError(f"{name}: matrices contain NaN/inf; build them with matrices_from_points.")
    return mats


__all__ = [
    "WARP_FILL",
    "bilinear_sample",
    "gather_windows",
    "invert_affine",
    "roi_extent",
    "sample_positions",
    "unit_sampling_matrix",
    "validate_matrices",
]
