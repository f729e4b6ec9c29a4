"""latentsync eval's pieces: PSNR/SSIM outside the face (infinite / 1 when only the face changed), the face region,
the deterministic StableSyncNet pairs, file pairing and the Markdown table."""

from __future__ import annotations

import math

import numpy as np
import torch

from latentsync.metrics import evaluate
from latentsync.metrics.score import SyncScore, TrackScore
from latentsync.metrics.tracks import FaceTrack


def _score_with_box(count: int, box: tuple[float, float, float, float]) -> SyncScore:
    track = FaceTrack(np.arange(count), np.tile(np.asarray(box, np.float64), (count, 1)))
    return SyncScore(scorable=True, reason="", tracks=[TrackScore(track, None)], num_frames=count)


def _frames(count: int = 4, size: int = 96) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, size, size, 3), generator=g, dtype=torch.uint8)


def test_face_region_is_excluded_and_only_it():
    score = _score_with_box(4, (40, 40, 56, 56))  # 16 px box at (48, 48): 2x -> 32 px + 5 px SSIM margin
    keep = evaluate.face_exclusion(score, np.arange(4), 4, (96, 96))
    assert keep.shape == (4, 96, 96)
    assert not keep[:, 48, 48].any() and not keep[:, 27, 48].any() and not keep[:, 48, 68].any()
    assert keep[:, 20, 48].all() and keep[:, 48, 76].all() and keep[:, 0, 0].all()
    assert int((~keep[0]).sum()) == 42 * 42


def test_psnr_ssim_outside_the_face():
    real = _frames()
    score = _score_with_box(4, (40, 40, 56, 56))
    keep = evaluate.face_exclusion(score, np.arange(4), 4, (96, 96))
    same = evaluate.outside_face_quality(real, real.clone(), keep)
    assert same[0] == math.inf and same[1] == 1.0 and same[2] == int(keep.sum())
    mouth = real.clone()
    mouth[:, 44:52, 44:52] = 0  # the pack's kind of change: inside the face
    assert evaluate.outside_face_quality(real, mouth, keep)[:2] == (math.inf, 1.0)
    corner = real.clone()
    corner[:, :8, :8] = 255 - corner[:, :8, :8]
    psnr, ssim, _ = evaluate.outside_face_quality(real, corner, keep)
    assert 0 < psnr < 60 and 0 < ssim < 1
    shorter = evaluate.outside_face_quality(real, real[:2], keep)  # common frames only
    assert shorter[0] == math.inf and shorter[2] == int(keep[:2].sum())


def test_ssim_map_known_values():
    a = _frames(1, 32)
    assert torch.allclose(evaluate.ssim_map(a, a), torch.ones(1, 32, 32, dtype=torch.float64))
    flat = torch.full_like(a, 128)
    assert float(evaluate.ssim_map(a, flat).mean()) < 0.1


def test_ssim_map_equals_the_windowed_sums():
    """Against SSIM written out: reflect-padded 11x11 Gaussian-weighted means, variances and covariance per pixel."""
    a, b = _frames(2, 20), _frames(2, 20)
    b = torch.roll(b, 1, 0)  # two different pictures per pair
    got = evaluate.ssim_map(a, b).numpy()
    t = np.arange(evaluate.SSIM_WINDOW) - evaluate.SSIM_WINDOW // 2
    g = np.exp(-(t ** 2) / (2 * evaluate.SSIM_SIGMA ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    weights = np.array([0.299, 0.587, 0.114])
    pad = evaluate.SSIM_WINDOW // 2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    for n in range(2):
        x = np.pad(a[n].numpy().astype(np.float64) @ weights, pad, mode="reflect")
        y = np.pad(b[n].numpy().astype(np.float64) @ weights, pad, mode="reflect")
        for i in range(20):
            for j in range(20):
                px, py = x[i:i + 2 * pad + 1, j:j + 2 * pad + 1], y[i:i + 2 * pad + 1, j:j + 2 * pad + 1]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px * px).sum() - mx * mx, (w * py * py).sum() - my * my
                cov = (w * px * py).sum() - mx * my
                want = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
                assert abs(got[n, i, j] - want) < 1e-9, (n, i, j, got[n, i, j], want)


def test_accuracy_pairs_are_deterministic_and_balanced():
    pairs = evaluate.accuracy_pairs(64)
    assert pairs == evaluate.accuracy_pairs(64)
    assert [p[2] for p in pairs] == [1, 0] * 4
    for (s, m, label) in pairs:
        assert m in (0, 16, 32, 48) and 0 <= s <= 48
        assert (s == m) == (label == 1)
    assert evaluate.accuracy_pairs(31) == []


def test_pairing_and_table(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    for folder, names in (("real", ["a.mp4", "b.mp4", "notes.txt"]), ("fake", ["a.mp4", "c.mov"])):
        for name in names:
            (tmp_path / folder / name).write_bytes(b"x")
    pairs, only_real, only_fake = evaluate.pair_files(tmp_path / "real", tmp_path / "fake")
    assert [p[0] for p in pairs] == ["a"] and only_real == ["b"] and only_fake == ["c"]
    summary = {"videos": 1, "scorable": 1, "lse_c": 7.5, "lse_d": 6.25, "syncnet_accuracy": 0.5,
               "accuracy_pairs": 8, "psnr_outside_face": "inf", "ssim_outside_face": 1.0}
    report = {"real_dir": "r", "fake_dir": "f", "real": {"summary": dict(summary, psnr_outside_face=None,
                                                                      ssim_outside_face=None)},
              "fake": {"summary": summary}, "fvd_note": evaluate.FVD_NOTE, "syncnet_accuracy_note": None}
    table = evaluate.markdown_table(report)
    assert "| fake (f) | 1/1 | 7.50 | 6.25 | 50.0% | - | ∞ | 1.0000 |" in table
    assert "FVD not computed" in table and "weights_only" in table
