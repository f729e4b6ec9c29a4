"""Fixed mouth mask geometry, latent mask, reference / masked inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentsync.face.mask import fixed_mask, mask_latent, prepare_face_inputs


def test_mask_256_geometry():
    m = fixed_mask(256)
    assert m.shape == (256, 256) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert 0.40 < (m == 0).float().mean().item() < 0.415  # ~40.7 % of the crop is regenerated
    assert torch.all(m[:95] == 1) and torch.all(m[243:] == 1)  # forehead/eyes and below the chin kept
    assert torch.all(m[95:128, 78:178] == 1)  # nose notch kept
    assert torch.all(m[95:128, 9:78] == 0) and torch.all(m[95:128, 178:247] == 0)  # cheeks beside the nose
    assert torch.all(m[150:200, 40:216] == 0)  # mouth and jaw
    assert m[242, 140] == 0 and m[242, 120] == 1  # the U closes towards the chin
    rows_masked = (m == 0).sum(dim=1)
    assert torch.all(rows_masked[128:243].diff()[20:] <= 0)  # narrowing towards the chin


def test_mask_other_resolutions_are_soft_resizes():
    base = fixed_mask(256)
    for res in (512, 384):
        m = fixed_mask(res)
        assert m.shape == (res, res) and m.dtype == torch.float32
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
        levels = m * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4)  # uint8 levels / 255, as upstream
        assert ((m > 0) & (m < 1)).any()  # soft edges
        near = F.interpolate(base[None, None], size=(res, res), mode="nearest")[0, 0] < 0.5
        ours = m < 0.5
        iou = ((near & ours).sum() / (near | ours).sum()).item()
        assert iou > 0.98


def test_mask_is_a_fresh_copy_and_validates():
    a = fixed_mask(256)
    a.zero_()
    assert fixed_mask(256).sum() > 0
    for bad in (0, 4, 256.0, "256", True):
        with pytest.raises(ValueError):
            fixed_mask(bad)


def test_mask_latent_is_nearest_every_eighth_pixel():
    m = fixed_mask(256)
    lat = mask_latent(m, (32, 32))
    assert lat.shape == (1, 32, 32)
    assert torch.equal(lat[0], m[::8, ::8])
    with pytest.raises(ValueError):
        mask_latent(m[None], (32, 32))


def test_prepare_face_inputs():
    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=gen)
    m = fixed_mask(256)
    ref, masked, lat = prepare_face_inputs(faces, m)
    assert ref.dtype == masked.dtype == torch.float32 and ref.shape == masked.shape == (2, 3, 256, 256)
    torch.testing.assert_close(ref, faces.float() / 127.5 - 1, atol=1e-6, rtol=0)
    assert float(ref.min()) >= -1 and float(ref.max()) <= 1
    mouth = (m == 0).expand_as(masked)
    assert torch.all(masked[mouth] == 0) and torch.equal(masked[~mouth], ref[~mouth])
    assert lat.shape == (1, 32, 32)
    with pytest.raises(ValueError):
        prepare_face_inputs(faces.float(), m)
    with pytest.raises(ValueError):
        prepare_face_inputs(faces, fixed_mask(512))
