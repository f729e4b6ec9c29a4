"""Resize kernels: OpenCV-style Lanczos4 on uint8, bicubic antialias, mirror padding indices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentsync.face.resize import bicubic_antialias, lanczos4_u8, reflect_indices


def test_lanczos_identity_and_constant():
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 17, 23), dtype=torch.uint8, generator=gen)
    assert torch.equal(lanczos4_u8(img, (17, 23)), img)
    for value in (0, 1, 128, 200, 255):
        flat = torch.full((1, 40, 30), value, dtype=torch.uint8)
        for size in ((64, 64), (13, 7), (40, 97)):
            assert torch.equal(lanczos4_u8(flat, size), torch.full((1, *size), value, dtype=torch.uint8)), (value, size)


def test_lanczos_batched_equals_single_and_shapes():
    gen = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (3, 3, 28, 21), dtype=torch.uint8, generator=gen)
    batched = lanczos4_u8(img, (32, 32))
    assert batched.shape == (3, 3, 32, 32) and batched.dtype == torch.uint8
    for i in range(3):
        for c in range(3):
            assert torch.equal(lanczos4_u8(img[i, c], (32, 32)), batched[i, c])


def test_lanczos_upscale_by_two_keeps_structure():
    # A step edge stays a step: far from the edge the values are exact, near it Lanczos rings (clipped).
    img = torch.zeros((1, 16, 16), dtype=torch.uint8)
    img[:, :, 8:] = 255
    up = lanczos4_u8(img, (32, 32))
    assert torch.all(up[:, :, :10] == 0) and torch.all(up[:, :, 22:] == 255)
    assert 0 < int(up[0, 0, 15]) < 255 or 0 < int(up[0, 0, 16]) < 255


def test_lanczos_rejects_bad_input():
    with pytest.raises(TypeError):
        lanczos4_u8(torch.zeros((4, 4)), (8, 8))
    with pytest.raises(ValueError):
        lanczos4_u8(torch.zeros((4, 4), dtype=torch.uint8), (0, 8))


def test_bicubic_antialias_matches_interpolate_and_keeps_dtype():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand((2, 3, 64, 64), generator=gen) * 2 - 1
    ref = F.interpolate(x, size=(70, 52), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(bicubic_antialias(x, (70, 52)), ref, atol=0, rtol=0)
    half = bicubic_antialias(x.half(), (70, 52))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, atol=2e-3, rtol=0)


def test_reflect_indices():
    x = torch.arange(7.0).view(1, 1, 7)
    for pad in (0, 1, 3, 6):
        ref = F.pad(x, (pad, pad), mode="reflect")[0, 0]
        assert torch.equal(x[0, 0][reflect_indices(7, pad, pad)], ref)
    long = reflect_indices(3, 5, 5)  # folds back and forth instead of failing
    assert long.tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]
    assert reflect_indices(1, 2, 2).tolist() == [0, 0, 0, 0, 0]
