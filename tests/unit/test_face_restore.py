"""Paste-back and composite: copy-through outside the soft mask, odd frame sizes, layouts, flags, fp16."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from face_points import face_points
from latentsync.face import align, restore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # composite_ops: the bench's operation counter


def _min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    before, after = size // 2, size - 1 - size // 2
    padded = F.pad(x, (before, after, before, after), value=float("inf"))
    return -F.max_pool2d(-padded, size, stride=1)


def _reference(frame: torch.Tensor, face: torch.Tensor, matrix: torch.Tensor, resolution: int):
    """Whole-frame restore of one RGB frame with plain torch ops; returns (frame uint8, soft mask)."""
    crop_w, crop_h = align.crop_size(resolution)
    height, width, _ = frame.shape
    face = F.interpolate(face[None].float(), size=(crop_h, crop_w), mode="bicubic", align_corners=False, antialias=True)
    yy, xx = torch.meshgrid(torch.arange(height).double(), torch.arange(width).double(), indexing="ij")
    m = matrix.double()
    cx = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    cy = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    grid = torch.stack([cx / (crop_w - 1) * 2 - 1, cy / (crop_h - 1) * 2 - 1], -1)[None].float()
    vals = F.grid_sample(face, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    cover = F.grid_sample(torch.ones_like(face[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    warped = ((vals + (1 - cover) * 127) / 2 + 0.5).clamp(0, 1) * 255
    outline = _min_filter(cover, 2)
    edge = int(float(outline.sum()) ** 0.5) // 20
    centre = _min_filter(outline, 2 * edge if edge else 3)
    k = 2 * edge + 1
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    g = torch.exp(-((torch.arange(k) - k // 2).float() ** 2) / (2 * sigma**2))
    g = g / g.sum()
    soft = F.conv2d(F.pad(centre, (k // 2, k // 2, 0, 0), mode="reflect"), g.view(1, 1, 1, k))
    soft = F.conv2d(F.pad(soft, (0, 0, k // 2, k // 2), mode="reflect"), g.view(1, 1, k, 1))
    img = frame.permute(2, 0, 1)[None].float()
    out = soft * (outline * warped) + (1 - soft) * img
    return out[0].permute(1, 2, 0).to(torch.uint8), soft[0, 0]


def _faces(count: int, resolution: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((count, 3, resolution, resolution), generator=gen) * 2.2 - 1.1


def _frames(count: int, height: int, width: int, channels: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, channels), dtype=torch.uint8, generator=gen)


def test_paste_mouth_formula():
    gen = torch.Generator().manual_seed(0)
    decoded, ref = torch.rand((2, 2, 3, 8, 8), generator=gen) * 2 - 1
    keep = torch.rand((8, 8), generator=gen)
    out = restore.paste_mouth(decoded, ref, keep)
    torch.testing.assert_close(out, decoded * (1 - keep) + ref * keep)
    binary = (keep > 0.5).float()
    out = restore.paste_mouth(decoded, ref, binary)
    assert torch.equal(out[..., binary == 1], ref[..., binary == 1])
    assert torch.equal(out[..., binary == 0], decoded[..., binary == 0])


def test_soft_mask_params():
    assert restore.soft_mask_params(50_000) == (22, 23, pytest.approx(3.8))
    assert restore.soft_mask_params(48_000)[:2] == (20, 21)
    assert restore.soft_mask_params(100)[:2] == (3, 1)  # empty OpenCV kernel -> 3x3, no blur


def test_matches_whole_frame_reference_and_copies_through():
    # Three faces of different sizes (different kernel groups), one partly outside, one frame not applied.
    frames = _frames(4, 220, 260, 3, seed=1)
    pts = torch.stack(
        [face_points((130, 100), 80, 0.2), face_points((245, 30), 70, -0.3), face_points((60, 150), 25), face_points((100, 75), 50)]
    )
    mats = align.matrices_from_points(pts, 256)
    faces = _faces(4, 256, seed=2)
    apply = torch.tensor([True, True, True, False])
    out = restore.composite(frames, faces, mats, 256, apply=apply)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    assert torch.equal(out[3], frames[3])
    edges = {p[0] for p in restore.outline_params(mats[:3], (220, 260), 256)}
    assert len(edges) == 3
    for i in range(3):
        ref, soft = _reference(frames[i], faces[i], mats[i], 256)
        outside = soft == 0
        assert outside.any() and (~outside).any()
        assert torch.equal(out[i][outside], frames[i][outside]), f"frame {i} changed outside the soft mask"
        assert not torch.equal(out[i], frames[i])
        diff = (out[i].to(torch.int16) - ref.to(torch.int16)).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.005, (i, diff.max(), (diff > 0).float().mean())


def test_small_and_off_frame_faces():
    frames = _frames(3, 64, 64, 3, seed=3)
    pts = torch.stack([face_points((32, 32), 30), face_points((5, 60), 40, 0.5), face_points((500, -300), 30)])
    mats = align.matrices_from_points(pts, 512)
    faces = _faces(3, 512, seed=4)
    out = restore.composite(frames, faces, mats, 512)
    assert torch.equal(out[2], frames[2])  # face entirely outside: nothing to paste
    for i in range(2):
        ref, soft = _reference(frames[i], faces[i], mats[i], 512)
        assert torch.equal(out[i][soft == 0], frames[i][soft == 0])
        diff = (out[i].to(torch.int16) - ref.to(torch.int16)).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.005


def test_4k_frame_touches_only_the_face_window():
    frames = _frames(1, 2160, 3840, 3, seed=5)
    pts = face_points((3600, 2000), 400, 0.1)[None]  # large face, partly below/right of the frame
    mats = align.matrices_from_points(pts, 256)
    faces = _faces(1, 256, seed=6)
    out = restore.composite(frames, faces, mats, 256)
    changed = (out != frames).any(-1)[0]
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert rows.numel() > 100_000
    # The same composite on a sub-frame (matrices shifted) agrees: result does not depend on the frame size.
    y0, x0 = int(rows.min()) - 40, int(cols.min()) - 40
    sub = frames[:, y0:, x0:].contiguous()
    shifted = mats.clone()
    shifted[:, :, 2] += mats[:, :, 0] * x0 + mats[:, :, 1] * y0
    sub_out = restore.composite(sub, faces, shifted, 256)
    diff = (sub_out.to(torch.int16) - out[:, y0:, x0:].to(torch.int16)).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    assert torch.equal(out[:, :y0], frames[:, :y0]) and torch.equal(out[:, :, :x0], frames[:, :, :x0])


def test_rgba_alpha_passes_through_and_grey():
    frames = _frames(2, 120, 96, 4, seed=7)
    pts = torch.stack([face_points((48, 60), 40), face_points((40, 50), 30, 0.3)])
    mats = align.matrices_from_points(pts, 256)
    faces = _faces(2, 256, seed=8)
    out = restore.composite(frames, faces, mats, 256)
    assert torch.equal(out[..., 3], frames[..., 3])
    assert torch.equal(out[..., :3], restore.composite(frames[..., :3].contiguous(), faces, mats, 256))

    grey = frames[..., :1].contiguous()
    grey_faces = faces[:, :1].expand(-1, 3, -1, -1).contiguous()  # a grey face: luminance == its value
    out_grey = restore.composite(grey, grey_faces, mats, 256)
    assert out_grey.shape == grey.shape
    as_rgb = restore.composite(grey.expand(-1, -1, -1, 3).contiguous(), grey_faces, mats, 256)[..., :1]
    diff = (out_grey.to(torch.int16) - as_rgb.to(torch.int16)).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01


def test_apply_none_false_and_device_argument():
    frames = _frames(2, 100, 100, 3, seed=9)
    mats = align.matrices_from_points(torch.stack([face_points((50, 50), 40)] * 2), 256)
    faces = _faces(2, 256, seed=10)
    assert torch.equal(restore.composite(frames, faces, mats, 256, apply=torch.zeros(2, dtype=torch.bool)), frames)
    both = restore.composite(frames, faces, mats, 256, device="cpu")
    first = restore.composite(frames, faces, mats, 256, apply=[True, False])
    assert torch.equal(first[0], both[0]) and torch.equal(first[1], frames[1])


def test_fp16_close_to_fp32():
    frames = _frames(2, 160, 120, 3, seed=11)
    mats = align.matrices_from_points(torch.stack([face_points((60, 80), 50), face_points((70, 70), 45, 0.2)]), 256)
    faces = _faces(2, 256, seed=12)
    full = restore.composite(frames, faces, mats, 256)
    half = restore.composite(frames, faces.half(), mats, 256, dtype=torch.float16)
    diff = (full.to(torch.int16) - half.to(torch.int16)).abs()
    assert diff.max() <= 2, diff.max()
    assert (diff > 0).float().mean() < 0.1
    for i in range(2):
        _, soft = _reference(frames[i], faces[i], mats[i], 256)
        assert torch.equal(half[i][soft == 0], frames[i][soft == 0])


def test_rejects_bad_input():
    frames = _frames(1, 64, 64, 3, seed=0)
    mats = align.matrices_from_points(face_points((32, 32), 30)[None], 256)
    faces = _faces(1, 256, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        restore.composite(frames.float(), faces, mats, 256)
    with pytest.raises(ValueError, match="faces"):
        restore.composite(frames, faces[:, :2], mats, 256)
    with pytest.raises(ValueError, match="apply"):
        restore.composite(frames, faces, mats, 256, apply=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="dtype"):
        restore.composite(frames, faces, mats, 256, dtype=torch.bfloat16)


def test_processing_in_small_parts_gives_the_same_frames(monkeypatch):
    # The window budget bounds the temporaries (one frame per part here); the result must not depend on it.
    frames = _frames(5, 120, 140, 3, seed=7)
    pts = torch.stack([face_points((70, 60), 40 + 6 * i, 0.1 * i) for i in range(5)])
    mats = align.matrices_from_points(pts, 256)
    faces = _faces(5, 256, seed=8)
    whole = restore.composite(frames, faces, mats, 256)
    monkeypatch.setattr(restore, "_MAX_WINDOW_PIXELS", 1)
    assert torch.equal(restore.composite(frames, faces, mats, 256), whole)


def _blur_reference(plane: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """One plane blurred in float64 by two convolutions with mirror padding (kornia's ``gaussian_blur2d``)."""
    from latentsync.face.resize import reflect_indices

    g = restore._gaussian_kernel(size, sigma)
    r = size // 2
    x = plane.double()[None, None]
    x = x.index_select(3, reflect_indices(x.shape[3], r, r))
    x = F.conv2d(x, g.view(1, 1, 1, size))
    x = x.index_select(2, reflect_indices(x.shape[2], r, r))
    return F.conv2d(x, g.view(1, 1, size, 1))[0, 0]


@pytest.mark.parametrize("hw", [(90, 70), (5, 300), (40, 9)])  # the last two: the mirror folds more than once
def test_blur_gives_each_plane_its_own_kernel(hw):
    # Planes with different kernels share one call (and one banded product); each must equal its own float64 blur,
    # zero exactly where the reference is zero (the composite copies those pixels), for odd sizes and a 1-tap kernel.
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand((4, *hw), generator=gen)
    masks[:, : hw[0] // 3] = 0
    masks[:, :, -hw[1] // 4 :] = 0
    masks[1] = 0
    params = [restore._params_from_edge(edge)[1:] for edge in (10, 3, 0, 17)]
    for dtype in (torch.float32, torch.float16):
        out = restore._blur(masks.to(dtype), params)
        assert out.dtype == dtype and out.shape == masks.shape
        for i, (size, sigma) in enumerate(params):
            ref = _blur_reference(masks[i].to(dtype), size, sigma)
            assert torch.equal(out[i] == 0, ref == 0), (dtype, i)
            rel, floor = (1e-6, 1e-30) if dtype == torch.float32 else (1e-3, 2.0**-24)  # rounding; fp16's subnormals
            excess = (out[i].double() - ref).abs() - (rel * ref.abs() + floor)
            assert excess.max() <= 0, (dtype, i, excess.max().item())


def test_blur_operations_do_not_grow_with_kernel_size_or_count():
    # On a GPU the composite waits on launches: a loop over taps or over kernel sizes would show here. Operations on
    # image-sized tensors are counted (the few numbers of the kernels themselves are made on the host).
    from composite_ops import OpCount

    masks = torch.rand(3, 64, 48)
    counts = []
    for params in ([(21, 3.5)] * 3, [(45, 7.4)] * 3, [(21, 3.5), (33, 5.6), (45, 7.4)]):
        with OpCount(image_sized=1000) as counter:
            restore._blur(masks, params)
        counts.append(counter.counts["image_sized"])
    assert counts[0] == counts[1] == counts[2], counts
