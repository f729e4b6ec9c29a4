"""Alignment: similarity fit, bias smoothing (reset, streaming), warps on odd frame sizes and layouts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from face_points import face_points
from latentsync.face import align


def _reference_crops(frames: torch.Tensor, matrices: torch.Tensor, resolution: int) -> torch.Tensor:
    """Whole-frame grid_sample warp (bilinear, fill 127, truncation): an independent implementation."""
    crop_w, crop_h = align.crop_size(resolution)
    count, height, width, _ = frames.shape
    full = torch.cat([matrices.double(), torch.tensor([[[0.0, 0.0, 1.0]]]).double().expand(count, 1, 3)], 1)
    inv = torch.linalg.inv(full)
    v, u = torch.meshgrid(torch.arange(crop_h).double(), torch.arange(crop_w).double(), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1)
    src = torch.einsum("nij,hwj->nhwi", inv[:, :2], pix)
    grid = torch.stack([src[..., 0] / (width - 1) * 2 - 1, src[..., 1] / (height - 1) * 2 - 1], -1).float()
    img = frames.permute(0, 3, 1, 2).float()
    vals = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    cover = F.grid_sample(torch.ones_like(img[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (vals + (1 - cover) * 127).to(torch.uint8)


def _assert_close_u8(a: torch.Tensor, b: torch.Tensor, max_diff: int = 1, max_frac: float = 0.01) -> None:
    diff = (a.to(torch.int16) - b.to(torch.int16)).abs()
    assert diff.max().item() <= max_diff, diff.max().item()
    assert (diff > 0).float().mean().item() <= max_frac


def test_crop_size_and_template():
    assert align.crop_size(256) == (210, 280)
    assert align.crop_size(512) == (420, 560)
    tpl = align.face_template(256)
    torch.testing.assert_close(tpl, torch.tensor([[47.6, 56.0], [162.4, 56.0], [105.0, 112.0]]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        align.crop_size(0)


def test_similarity_maps_points_onto_template():
    tpl = align.face_template(256)
    pts = torch.stack([face_points((300, 200), 90, 0.3), face_points((50, 60), 30, -0.2)])
    mats, bias = align.similarity_matrix(pts, tpl)
    assert mats.shape == (2, 2, 3) and bias.shape == (2, 2)
    mapped = pts @ mats[:, :, :2].transpose(1, 2) + mats[:, None, :, 2]
    # Not an exact fit (the template is no similar copy of these points) but close, and no reflection.
    assert (mapped - tpl).abs().max() < 15
    assert torch.all(torch.linalg.det(mats[:, :, :2]) > 0)
    mirrored = pts.clone()
    mirrored[..., 0] = -mirrored[..., 0]
    mats_m, _ = align.similarity_matrix(mirrored, tpl)
    assert torch.all(torch.linalg.det(mats_m[:, :, :2]) > 0)


def test_exact_similarity_is_recovered():
    tpl = align.face_template(256).double()
    angle, scale, shift = 0.25, 1.7, torch.tensor([40.0, -12.0], dtype=torch.float64)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    pts = ((tpl @ rot.T) * scale + shift).float()[None]
    mats, bias = align.similarity_matrix(pts, align.face_template(256))
    mapped = pts @ mats[:, :, :2].transpose(1, 2) + mats[:, None, :, 2]
    torch.testing.assert_close(mapped, align.face_template(256)[None], atol=2e-3, rtol=0)


def test_smoother_reset_and_streaming():
    pts = torch.stack([face_points((200 + 3 * i, 150 - i), 80 + i, 0.02 * i) for i in range(7)])
    one_shot = align.matrices_from_points(pts, 256)
    smoother = align.AlignmentSmoother()
    streamed = torch.cat(
        [align.matrices_from_points(pts[:3], 256, smoother), align.matrices_from_points(pts[3:], 256, smoother)]
    )
    torch.testing.assert_close(streamed, one_shot, atol=0, rtol=0)

    resets = torch.zeros(7, dtype=torch.bool)
    resets[4] = True
    with_reset = align.matrices_from_points(pts, 256, resets=resets)
    fresh = align.matrices_from_points(pts[4:], 256)
    torch.testing.assert_close(with_reset[4:], fresh, atol=0, rtol=0)
    torch.testing.assert_close(with_reset[:4], one_shot[:4], atol=0, rtol=0)

    smoother.reset()
    torch.testing.assert_close(align.matrices_from_points(pts[2:], 256, smoother), align.matrices_from_points(pts[2:], 256))
    # Smoothing is visible: frame 1 differs from its unsmoothed matrix in the translation only.
    raw1 = align.matrices_from_points(pts[1:2], 256)[0]
    assert torch.equal(one_shot[1, :, :2], raw1[:, :2]) and not torch.equal(one_shot[1, :, 2], raw1[:, 2])


def test_points_validation():
    with pytest.raises(ValueError):
        align.matrices_from_points(torch.zeros(2, 2, 2), 256)
    bad = face_points((10, 10), 20)[None].clone()
    bad[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="frame"):
        align.matrices_from_points(bad, 256)
    with pytest.raises(ValueError, match="coincide"):
        align.matrices_from_points(torch.ones(1, 3, 2), 256)


@pytest.mark.parametrize(
    "frame_hw, center, distance",
    [
        ((120, 160), (80, 60), 40),  # inside
        ((120, 160), (150, 20), 50),  # partly outside (right/top)
        ((64, 64), (32, 32), 30),  # tiny frame, crop larger than the frame
        ((90, 200), (-200, 40), 20),  # entirely outside -> all fill
    ],
)
def test_warp_matches_whole_frame_reference(frame_hw, center, distance):
    gen = torch.Generator().manual_seed(sum(frame_hw))
    frames = torch.randint(0, 256, (2, *frame_hw, 3), dtype=torch.uint8, generator=gen)
    pts = torch.stack([face_points(center, distance, 0.2), face_points(center, distance * 1.2, -0.1)])
    mats = align.matrices_from_points(pts, 256)
    crops = align.warp_crops(frames, mats, 256)
    assert crops.shape == (2, 3, 280, 210) and crops.dtype == torch.uint8
    _assert_close_u8(crops, _reference_crops(frames, mats, 256))
    if center[0] < 0:
        assert torch.all(crops == 127)


def test_warp_faces_4k_and_layouts():
    gen = torch.Generator().manual_seed(3)
    frame = torch.randint(0, 256, (1, 2160, 3840, 3), dtype=torch.uint8, generator=gen)
    mats = align.matrices_from_points(face_points((3700, 400), 500, 0.1)[None], 512)
    faces = align.warp_faces(frame, mats, 512)
    assert faces.shape == (1, 3, 512, 512) and faces.dtype == torch.uint8
    # float32 unit coordinates (kornia's) are ~2e-4 px off at 4K, so truncation flips a few % of levels.
    _assert_close_u8(align.warp_crops(frame, mats, 512), _reference_crops(frame, mats, 512), max_frac=0.03)

    small = frame[:, 1000:1100, 2000:2080].contiguous()
    mats_s = align.matrices_from_points(face_points((40, 50), 35)[None], 256)
    rgb = align.warp_faces(small, mats_s, 256)
    rgba = torch.cat([small, torch.full_like(small[..., :1], 9)], -1)
    assert torch.equal(align.warp_faces(rgba, mats_s, 256), rgb)
    grey = small[..., :1].contiguous()
    assert torch.equal(align.warp_faces(grey, mats_s, 256), align.warp_faces(grey.expand(-1, -1, -1, 3), mats_s, 256))
    # Non-contiguous frames (a strided view) give the same result.
    strided = frame[:, ::20, ::40]
    mats_v = align.matrices_from_points(face_points((48, 54), 40)[None], 256)
    assert torch.equal(align.warp_faces(strided, mats_v, 256), align.warp_faces(strided.contiguous(), mats_v, 256))


def test_warp_rejects_bad_input():
    mats = align.matrices_from_points(face_points((40, 50), 35)[None], 256)
    with pytest.raises(ValueError, match="uint8"):
        align.warp_faces(torch.zeros(1, 64, 64, 3), mats, 256)
    with pytest.raises(ValueError, match="matrices"):
        align.warp_faces(torch.zeros(2, 64, 64, 3, dtype=torch.uint8), mats, 256)


def test_warp_faces_in_parts_equals_one_batch(monkeypatch):
    # Frames are aligned in parts of a bounded crop-pixel budget; each part is per frame, so nothing changes.
    gen = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (5, 96, 120, 3), dtype=torch.uint8, generator=gen)
    pts = torch.stack([face_points((60, 50), 30 + 4 * i, 0.1 * i) for i in range(5)])
    mats = align.matrices_from_points(pts, 256)
    whole = align.warp_faces(frames, mats, 256)
    monkeypatch.setattr(align, "_ALIGN_CROP_PIXELS", 2 * 210 * 280)  # two 256 px crops per part: 3 parts
    assert torch.equal(align.warp_faces(frames, mats, 256), whole)
    with pytest.raises(ValueError):
        align.warp_faces(frames, mats[:4], 256)
