"""Face alignment, mask and restore against upstream's golden data (affine_restore_mask.safetensors).

Resolutions, frame ids, restore frame and tolerances come from the fixture file and manifest.json.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from safetensors.torch import load_file

from latentsync.face import align, mask, restore
from latentsync.face.resize import lanczos4_u8

FILE = "affine_restore_mask.safetensors"


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(str(fixtures_dir / FILE))


@pytest.fixture(scope="module")
def entry(manifest):
    return manifest["files"][FILE]


def _resolutions(entry: dict, pattern: str) -> list[int]:
    found = sorted({int(m.group(1)) for key in entry["tensors"] if (m := re.fullmatch(pattern, key))})
    assert found, f"no tensors matching {pattern} in the manifest entry of {FILE}"
    return found


def _stored_frames(count_stored: int, count_frames: int, restore_index: int) -> list[int]:
    """Frame indices a per-frame golden tensor holds: all frames, or only the restore frame."""
    if count_stored == count_frames:
        return list(range(count_frames))
    if count_stored == 1:
        return [restore_index]
    return list(range(count_frames - count_stored, count_frames))


def _assert_uint8_close(ours: torch.Tensor, ref: torch.Tensor, bounds: dict, what: str) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == torch.uint8, (what, ours.shape, ref.shape)
    diff = (ours.to(torch.int16) - ref.to(torch.int16)).abs()
    frac = (diff > 0).float().mean().item()
    assert diff.max().item() <= bounds["max_abs_diff"], f"{what}: max diff {diff.max().item()}"
    assert frac <= bounds["max_fraction_of_pixels_differing"], f"{what}: {frac:.4%} pixels differ"


def _restore_index(entry: dict) -> int:
    return int(entry["generation_params"]["restore_frame_index"])


@pytest.mark.parametrize("which", ["affine", "p_bias"])
def test_matrices_and_bias_filter(golden, entry, check, which):
    atol = check["affine_matrix"]["atol"]
    points = golden["landmarks3"].float()
    for res in _resolutions(entry, r"r(\d+)_affine"):
        if which == "affine":
            ours = align.matrices_from_points(points, res)
        else:
            _, raw = align.similarity_matrix(points, align.face_template(res))
            ours = align.AlignmentSmoother()(raw)
        torch.testing.assert_close(ours, golden[f"r{res}_{which}"], atol=atol, rtol=0)


def test_template_and_crop_size(entry):
    for res in _resolutions(entry, r"r(\d+)_affine"):
        stats = entry["stats"][str(res)]
        assert list(align.crop_size(res)) == stats["face_size_wh"]
        torch.testing.assert_close(
            align.face_template(res), torch.tensor(stats["face_template"], dtype=torch.float32), atol=1e-5, rtol=0
        )


def test_warped_crops_and_faces(golden, entry, check):
    frames = golden["frames"]
    restore_index = _restore_index(entry)
    for res in _resolutions(entry, r"r(\d+)_warped"):
        ids = _stored_frames(golden[f"r{res}_warped"].shape[0], frames.shape[0], restore_index)
        matrices = golden[f"r{res}_affine"][ids]
        crops = align.warp_crops(frames[ids], matrices, res)
        _assert_uint8_close(crops.permute(0, 2, 3, 1), golden[f"r{res}_warped"], check["uint8_image"], f"r{res}_warped")
        faces = align.warp_faces(frames[ids], matrices, res)
        _assert_uint8_close(faces, golden[f"r{res}_face"], check["uint8_image"], f"r{res}_face")
        # Lanczos alone, from upstream's own crop: OpenCV's result.
        from_golden_crop = lanczos4_u8(golden[f"r{res}_warped"].permute(0, 3, 1, 2), (res, res))
        _assert_uint8_close(from_golden_crop, golden[f"r{res}_face"], check["uint8_image"], f"lanczos r{res}")


def test_fixed_mask_shape(golden, entry):
    for res in _resolutions(entry, r"mask_(\d+)_u8"):
        ours = (mask.fixed_mask(res) * 255).round().to(torch.int16)
        ref = golden[f"mask_{res}_u8"].to(torch.int16)
        within = ((ours - ref).abs() <= 2).float().mean().item()
        ours_bin, ref_bin = ours < 128, ref < 128
        iou = ((ours_bin & ref_bin).sum() / (ours_bin | ref_bin).sum()).item()
        assert within >= 0.99, f"mask {res}: only {within:.4%} of pixels within 2 levels"
        assert iou >= 0.99, f"mask {res}: IoU {iou:.4f}"


def test_mask_resize_from_base(golden, entry, check):
    sizes = _resolutions(entry, r"mask_(\d+)_u8")
    base = golden[f"mask_{mask.BASE_RESOLUTION}_u8"]
    for res in sizes:
        _assert_uint8_close(lanczos4_u8(base, (res, res)), golden[f"mask_{res}_u8"], check["uint8_image"], f"mask {res}")


def test_reference_masked_and_latent_mask(golden, entry):
    restore_index = _restore_index(entry)
    for res in _resolutions(entry, r"r(\d+)_ref_pixel_values"):
        faces = golden[f"r{res}_face"]
        face = faces[_stored_frames(faces.shape[0], golden["frames"].shape[0], restore_index).index(restore_index)]
        keep = golden[f"mask_{res}_u8"].float() / 255.0
        ref, masked, latent = mask.prepare_face_inputs(face[None], keep)
        torch.testing.assert_close(ref[0], golden[f"r{res}_ref_pixel_values"], atol=1e-6, rtol=0)
        torch.testing.assert_close(masked[0], golden[f"r{res}_masked_pixel_values"], atol=1e-6, rtol=0)
        golden_latent = golden[[k for k in golden if k.startswith(f"r{res}_mask_latent_")][0]]
        assert latent.shape == golden_latent.shape
        assert torch.equal(latent, golden_latent)
        assert torch.equal(mask.mask_latent(keep, tuple(golden_latent.shape[-2:])), golden_latent)


def test_restore_parameters(golden, entry):
    restore_index = _restore_index(entry)
    height, width = golden["frames"].shape[1:3]
    for res in _resolutions(entry, r"r(\d+)_restored"):
        expected = entry["stats"][str(res)]["restore_params"]
        params = restore.outline_params(golden[f"r{res}_affine"][restore_index : restore_index + 1], (height, width), res)
        erode, blur, sigma = params[0]
        assert [erode, erode] == expected["cv2_erode_kernel"]
        assert [blur, blur] == expected["blur_kernel"]
        assert math.isclose(sigma, expected["blur_sigma"][0], abs_tol=1e-6)


def test_paste_back_and_restore(golden, entry, check):
    restore_index = _restore_index(entry)
    frames = golden["frames"]
    for res in _resolutions(entry, r"r(\d+)_restored"):
        faces = golden[f"r{res}_face"]
        face = faces[_stored_frames(faces.shape[0], frames.shape[0], restore_index).index(restore_index)]
        keep = golden[f"mask_{res}_u8"].float() / 255.0
        ref, _, _ = mask.prepare_face_inputs(face[None], keep)
        decoded = golden[f"r{res}_decoded_synthetic"].float()[None]
        combined = restore.paste_mouth(decoded, ref, keep)
        matrix = golden[f"r{res}_affine"][restore_index : restore_index + 1]
        out = restore.composite(frames[restore_index : restore_index + 1], combined, matrix, res)
        _assert_uint8_close(out[0], golden[f"r{res}_restored"], check["uint8_image"], f"r{res}_restored")
