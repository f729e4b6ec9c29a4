"""Putting generated faces back into the video frames (upstream's ``restore_video`` math, batched).

Per frame: the R x R face is resized (bicubic, antialiased) to the 3:4 crop, inverse-warped into the
frame, and blended through a soft mask made from the warped crop outline (2x2 erosion, then an erosion
and a Gaussian blur whose sizes grow with the face area). Everything runs on a window around the face
(plus the erosion/blur margin), so the cost follows the face size; every pixel the soft mask does not
touch is copied from the input, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .align import crop_size
from .warp import (
    WARP_FILL,
    bilinear_sample,
    gather_windows,
    invert_affine,
    roi_extent,
    sample_positions,
    unit_sampling_matrix,
    validate_matrices,
)
from .resize import bicubic_antialias, reflect_indices

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, for grey frames
_MAX_WINDOW_PIXELS = 1 << 21  # per processing chunk: frames x window area (~250 MB of temporaries)
# Zero rows/columns kept around the crop outline in each window. The erosions shrink the outline by as
# much as the blur later spreads it (minus one pixel), so with this ring every window-truncated erosion
# and every mirrored blur tap sees only zeros where the whole frame would: results equal whole-frame ones.
_WINDOW_MARGIN = 2


def paste_mouth(decoded: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the generated mouth and take everything else from the reference face: ``decoded*(1-mask) + ref*mask``.

    ``decoded``/``reference`` ``(F, 3, R, R)`` in [-1, 1]; ``mask (R, R)`` with 1 = keep the reference.
    """
    if decoded.shape != reference.shape:
        raise ValueError(f"paste_mouth: decoded {tuple(decoded.shape)} and reference {tuple(reference.shape)} differ.")
    if tuple(mask.shape) != tuple(decoded.shape[-2:]):
        raise ValueError(f"paste_mouth: mask {tuple(mask.shape)} does not match faces {tuple(decoded.shape[-2:])}.")
    regenerate = 1 - mask.to(device=decoded.device, dtype=decoded.dtype)
    return decoded * regenerate + reference.to(decoded.dtype) * (1 - regenerate)


def _edge_sizes(areas: torch.Tensor) -> list[int]:
    """``int(sqrt(area)) // 20`` per frame, with the square root taken in float32 as upstream (one host sync)."""
    return (areas.to(torch.float32).sqrt().floor().to(torch.int64) // 20).cpu().tolist()


def _params_from_edge(edge: int) -> tuple[int, int, float]:
    erode = 2 * edge if edge > 0 else 3  # OpenCV treats an empty kernel as 3x3
    blur = 2 * edge + 1
    sigma = 0.3 * ((blur - 1) * 0.5 - 1) + 0.8
    return erode, blur, sigma


def soft_mask_params(area: float) -> tuple[int, int, float]:
    """Erosion kernel, blur kernel and blur sigma for an eroded crop outline covering ``area`` frame pixels.

    ``w = int(sqrt(area)) // 20``; erosion ``2w x 2w`` (OpenCV falls back to 3x3 for an empty kernel),
    blur ``2w + 1`` with OpenCV's default sigma for that size (e.g. area 50k -> 22, 23, 3.8).
    """
    return _params_from_edge(_edge_sizes(torch.tensor([float(area)]))[0])


def _window_min(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Minimum over every run of ``size`` consecutive entries along ``dim`` (length shrinks by ``size - 1``).

    Doubling spans (1, 2, 4, ...) then one overlap of two spans: O(log size) passes, exact for any dtype.
    """
    out_len = x.shape[dim] - size + 1
    span = 1
    cur = x
    while span * 2 <= size:
        keep = cur.shape[dim] - span
        cur = torch.minimum(cur.narrow(dim, 0, keep), cur.narrow(dim, span, keep))
        span *= 2
    return torch.minimum(cur.narrow(dim, 0, out_len), cur.narrow(dim, size - span, out_len))


def _erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Grey erosion of ``(N, H, W)`` with a ``size x size`` square anchored at ``size // 2``; outside pixels ignored.

    This is both OpenCV's ``erode`` (default anchor and border) and kornia's ``erosion`` ('geodesic' border).
    """
    before = size // 2
    after = size - 1 - before
    padded = F.pad(mask, (before, after, before, after), value=float("inf"))
    return _window_min(_window_min(padded, size, 1), size, 2)


def _gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """The blur's taps, float64 holding float32 values (computed in float32, as kornia does), on the host."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    sig = torch.tensor(sigma, dtype=torch.float32)
    kernel = torch.exp(-offsets.pow(2.0) / (2 * sig.pow(2.0)))
    return (kernel / kernel.sum()).double()


_BLUR_BLOCK = 64  # outputs per block of the blur's banded product (64: fastest on a CPU for kernels of 21-35 taps)


def _blur_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it: no TF32 or reduced-precision setting reaches it, and sums of non-negative
    taps stay exactly 0 only where every tap is 0. MPS has no float64 and gets float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def _blur(mask: torch.Tensor, params: list[tuple[int, float]]) -> torch.Tensor:
    """Separable Gaussian blur of each ``(H, W)`` plane of ``mask (N, H, W)`` with its own ``(size, sigma)``, mirror
    borders (kornia ``gaussian_blur2d`` semantics).

    Each pass is one batched product with a banded matrix per item (kernels of other sizes padded with zero taps), so
    the number of device operations does not grow with the kernel size or the number of sizes, as a loop over taps
    would (the composite is launch-bound on a GPU). Where a plane is 0 under all taps, the result is exactly 0.
    """
    radius = max(size for size, _ in params) // 2
    if radius == 0:
        return mask
    taps = torch.zeros((len(params), 2 * radius + 1), dtype=torch.float64)  # on the host: one copy to the device
    for size, sigma in set(params):
        members = torch.tensor([i for i, p in enumerate(params) if p == (size, sigma)])
        taps[members, radius - size // 2 : radius + size // 2 + 1] = _gaussian_kernel(size, sigma)
    work = _blur_dtype(mask.device)
    band = _banded(taps.to(mask.device, work), _BLUR_BLOCK)
    along_x = _blur_axis(mask.to(work), band, radius, 2)  # along x first, then y, as kornia
    return _blur_axis(along_x, band, radius, 1).to(mask.dtype)


def _banded(taps: torch.Tensor, block: int) -> torch.Tensor:
    """``(N, block + S - 1, block)`` matrices with ``out[j] = sum_k in[j + k] * taps[k]`` for a block of ``block``
    outputs read from ``block + S - 1`` inputs (entry ``[j + k, j] = taps[k]``, zeros elsewhere)."""
    count, span = taps.shape
    band = torch.zeros((count, block + span - 1, block), dtype=taps.dtype, device=taps.device)
    # entry [j + k, j] lies at (j + k) * block + j = j * (block + 1) + k * block: one strided view holds all of them
    band.as_strided((count, block, span), (band.stride(0), block + 1, block)).copy_(taps[:, None, :].expand(-1, block, -1))
    return band


def _blur_axis(x: torch.Tensor, band: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Correlate ``x (N, H, W)`` along ``dim`` (2: rows, 1: columns) with each item's taps held in ``band`` (see
    :func:`_banded`).

    The axis is mirror-padded by ``radius``, then cut into blocks of ``block`` outputs, each a product with the band.
    The last block's overhang reads zeros and its outputs are dropped.
    """
    count, length = x.shape[0], x.shape[dim]
    block = band.shape[-1]
    span = block + 2 * radius
    blocks = -(-length // block)
    overhang = blocks * block - length
    if radius < length:
        mirror = (radius, radius, 0, 0) if dim == 2 else (0, 0, radius, radius)
        padded = F.pad(x[:, None], mirror, mode="reflect")[:, 0]
        if overhang:
            padded = F.pad(padded, (0, overhang) if dim == 2 else (0, 0, 0, overhang))
    else:  # the mirror folds more than once
        padded = x.index_select(dim, reflect_indices(length, radius, radius + overhang, x.device))
    if dim == 2:
        windows = padded.unfold(2, span, block).reshape(count, -1, span)  # (N, H * blocks, span)
        return torch.bmm(windows, band).view(count, x.shape[1], blocks * block)[:, :, :length]
    width = x.shape[2]
    windows = padded.as_strided((count, blocks, span, width), (padded.stride(0), block * width, width, 1))
    out = torch.matmul(band.transpose(1, 2)[:, None], windows)  # (N, blocks, block, W)
    return out.view(count, blocks * block, width)[:, :length]


def _face_planes(faces: torch.Tensor, channels: int) -> torch.Tensor:
    """Faces ``(N, 3, R, R)`` as the planes to composite: RGB, or BT.601 luminance for grey frames."""
    if channels == 1:
        weights = torch.tensor(_LUMA, device=faces.device, dtype=faces.dtype).view(1, 3, 1, 1)
        return (faces * weights).sum(dim=1, keepdim=True)
    return faces


def _support_boxes(inverse: torch.Tensor, crop_wh: tuple[int, int]) -> torch.Tensor:
    """Frame-pixel bounds ``(N, 4)`` (x_lo, x_hi, y_lo, y_hi), inclusive, of where a crop's bilinear taps reach.

    A frame pixel sees the crop iff its crop position lies in the open box ``(-1, w) x (-1, h)``; the box
    corners mapped back to the frame bound that set, rounded outwards and widened by one pixel, so the
    bounds' outermost rows and columns never see the crop.
    """
    crop_w, crop_h = crop_wh
    inv = inverse.to(torch.float64)
    corners = torch.tensor(
        [[-1.0, -1.0, 1.0], [crop_w, -1.0, 1.0], [-1.0, crop_h, 1.0], [crop_w, crop_h, 1.0]], dtype=torch.float64
    )
    pts = torch.einsum("nij,kj->nki", inv, corners)
    lo = torch.floor(pts.amin(dim=1)) - 1
    hi = torch.ceil(pts.amax(dim=1)) + 1
    return torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], dim=1).clamp(-1e7, 1e7).to(torch.int64)


@dataclass
class _Plan:
    """Per-frame windows (inclusive frame-pixel bounds incl. the erosion/blur margin) and sampling maps."""

    theta: torch.Tensor  # (N, 2, 3) frame unit coords -> crop unit coords
    x_lo: torch.Tensor
    x_hi: torch.Tensor
    y_lo: torch.Tensor
    y_hi: torch.Tensor
    frame_hw: tuple[int, int]
    crop_hw: tuple[int, int]

    def chunks(self, items: torch.Tensor):
        """Yield ``(part, ys, xs, (win_h, win_w))`` over ``items`` (indices into the plan), largest windows
        first, each chunk sharing one window size and bounded in total pixels; off-frame items are skipped."""
        height, width = self.frame_hw
        visible = (self.x_hi >= 0) & (self.x_lo < width) & (self.y_hi >= 0) & (self.y_lo < height)
        items = items[visible[items]]
        spans = (self.x_hi - self.x_lo + 1).clamp(max=width) * (self.y_hi - self.y_lo + 1).clamp(max=height)
        order = items[torch.argsort(spans[items], descending=True)]
        start = 0
        while start < order.numel():
            step = max(1, _MAX_WINDOW_PIXELS // int(spans[order[start]]))
            part = order[start : start + step]
            start += step
            xs, win_w = roi_extent(self.x_lo[part], self.x_hi[part], width)
            ys, win_h = roi_extent(self.y_lo[part], self.y_hi[part], height)
            yield part, ys, xs, (win_h, win_w)


def _plan(matrices: torch.Tensor, frame_hw: tuple[int, int], resolution: int) -> _Plan:
    crop_w, crop_h = crop_size(resolution)
    inverse = invert_affine(matrices)
    theta = unit_sampling_matrix(inverse, (crop_h, crop_w), frame_hw)
    boxes = _support_boxes(inverse, (crop_w, crop_h))
    margin = _WINDOW_MARGIN
    return _Plan(
        theta=theta,
        x_lo=boxes[:, 0] - margin,
        x_hi=boxes[:, 1] + margin,
        y_lo=boxes[:, 2] - margin,
        y_hi=boxes[:, 3] + margin,
        frame_hw=frame_hw,
        crop_hw=(crop_h, crop_w),
    )


def _window_positions(plan: _Plan, part: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, win_hw, device):
    """Crop pixel positions ``(x, y)``, each ``(N, h, w)``, of the window pixels (on ``device``)."""
    rows = ys.to(device)[:, None] + torch.arange(win_hw[0], device=device)
    cols = xs.to(device)[:, None] + torch.arange(win_hw[1], device=device)
    x, y = sample_positions(plan.theta[part], plan.frame_hw, plan.crop_hw, rows, cols)
    return x, y


def outline_params(
    matrices: torch.Tensor, frame_hw: tuple[int, int], resolution: int
) -> list[tuple[int, int, float] | None]:
    """Per frame ``(erosion kernel, blur kernel, sigma)`` that :func:`composite` uses (None: face off-frame)."""
    mats = validate_matrices(matrices, matrices.shape[0], "outline_params")
    plan = _plan(mats, (int(frame_hw[0]), int(frame_hw[1])), resolution)
    result: list[tuple[int, int, float] | None] = [None] * mats.shape[0]
    ones = torch.ones((mats.shape[0], *plan.crop_hw, 1), dtype=torch.uint8)
    for part, ys, xs, win_hw in plan.chunks(torch.arange(mats.shape[0])):
        x, y = _window_positions(plan, part, ys, xs, win_hw, torch.device("cpu"))
        _, coverage = bilinear_sample(ones[part], x, y)
        edges = _edge_sizes(_erode(coverage, 2).sum(dim=(1, 2)))
        for item, edge in zip(part.tolist(), edges):
            result[item] = _params_from_edge(edge)
    return result


def composite(
    frames: torch.Tensor,
    faces: torch.Tensor,
    matrices: torch.Tensor,
    resolution: int,
    *,
    apply: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Blend generated faces back into their frames; returns new uint8 frames ``(F, H, W, C)``.

    ``frames`` uint8 ``(F, H, W, C)`` with C = 3 (RGB), 4 (alpha passes through) or 1 (the face's
    luminance is composited); ``faces`` float [-1, 1] ``(F, 3, R, R)``; ``matrices (F, 2, 3)`` frame ->
    crop as used for alignment; ``apply (F,)`` bool selects the frames to touch (others are copied).
    Work happens on ``device`` (default: the frames' device) in ``dtype``; only windows around the faces
    travel there. Frame pixels where the soft mask is 0 come back unchanged, bit for bit.
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"composite: frames must be uint8 (F, H, W, C) with C in {{1, 3, 4}}, got {frames.dtype} "
            f"{tuple(frames.shape)}."
        )
    count, height, width, channels = frames.shape
    if faces.dim() != 4 or faces.shape[0] != count or faces.shape[1] != 3 or not faces.is_floating_point():
        raise ValueError(
            f"composite: faces must be float (F={count}, 3, R, R) in [-1, 1], got {faces.dtype} {tuple(faces.shape)}."
        )
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"composite: dtype must be torch.float32 or torch.float16, got {dtype}.")
    mats = validate_matrices(matrices, count, "composite")
    if apply is None:
        active = torch.arange(count)
    else:
        flags = torch.as_tensor(apply).detach().to("cpu", torch.bool).reshape(-1)
        if flags.numel() != count:
            raise ValueError(f"composite: apply has {flags.numel()} entries for {count} frames.")
        active = torch.nonzero(flags).flatten()

    out = frames.clone()
    if active.numel() == 0:
        return out
    work_device = torch.device(device) if device is not None else frames.device
    plane_count = 1 if channels == 1 else 3
    plan = _plan(mats[active], (height, width), resolution)
    dev = out.device
    for part, ys, xs, win_hw in plan.chunks(torch.arange(active.numel())):
        frame_index = active[part]
        window = gather_windows(frames, frame_index, ys, xs, win_hw)[..., :plane_count].to(work_device)
        face = faces[frame_index.to(faces.device)].to(work_device, torch.float32)
        planes = _face_planes(bicubic_antialias(face, plan.crop_hw), plane_count).to(dtype)
        x, y = _window_positions(plan, part, ys, xs, win_hw, work_device)
        blended = _blend_windows(window, planes, x, y, dtype)
        rows = ys.to(dev)[:, None] + torch.arange(win_hw[0], device=dev)
        cols = xs.to(dev)[:, None] + torch.arange(win_hw[1], device=dev)
        out[frame_index.to(dev)[:, None, None], rows[:, :, None], cols[:, None, :], :plane_count] = blended.to(dev)
    return out


def _blend_windows(
    window: torch.Tensor, planes: torch.Tensor, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Composite face planes ``(N, P, h, w)`` into frame windows ``(N, H, W, P)`` uint8 whose pixels sit
    at crop positions ``x, y (N, H, W)``; returns the new window pixels (uint8)."""
    device = window.device
    values, coverage = bilinear_sample(planes.permute(0, 2, 3, 1), x, y, dtype=dtype)
    # The fill is 127 in [-1, 1] units (upstream quirk): kept in float32, where the small coverage
    # errors of half precision would be amplified by 127 * 127.5.
    warped = values.to(torch.float32) + (1 - coverage)[..., None] * WARP_FILL
    warped = ((warped / 2 + 0.5).clamp(0, 1) * 255).to(dtype)
    outline_full = _erode(coverage, 2)
    outline = outline_full.to(dtype)
    pasted = outline[..., None] * warped

    edges = _edge_sizes(outline_full.sum(dim=(1, 2)))
    params = [_params_from_edge(edge) for edge in edges]
    erode_sizes = sorted({erode for erode, _, _ in params})
    if len(erode_sizes) == 1:
        centre = _erode(outline, erode_sizes[0])
    else:
        centre = torch.empty_like(outline)
        for size in erode_sizes:
            members = torch.tensor([i for i, p in enumerate(params) if p[0] == size], device=device)
            centre.index_copy_(0, members, _erode(outline.index_select(0, members), size))
    soft = _blur(centre, [(blur, sigma) for _, blur, sigma in params])

    base = window.to(dtype)
    weight = soft[..., None]
    mixed = (weight * pasted + (1 - weight) * base).to(torch.uint8)
    return torch.where(weight > 0, mixed, window)


__all__ = ["composite", "outline_params", "paste_mouth", "soft_mask_params"]
