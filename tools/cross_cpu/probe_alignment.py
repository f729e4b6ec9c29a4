"""Is this pack's face alignment bit-equal to upstream's on THIS processor? Run it on another machine's CPU.

Upstream's alignment (its ``AlignRestore``: a per-frame torch similarity transform, kornia's ``warp_affine``) and
this pack's (``latentsync.face.align`` / ``warp``) run on the parity fixtures' frames and points; every stage is
compared bit for bit: matrices, kornia's sampling matrices, sampling grids (also on restore-sized windows), the
raw crops and the LANCZOS4 faces. The golden data was made on one processor; on another, upstream itself moves
(MKL rounds by processor), so the script also reports how far upstream's own result is from the golden data, and
the chunk-0 posterior latents of the ``pipeline_e2e`` fixture through this pack's VAE path.

    LS_UPSTREAM=<extracted bytedance/LatentSync at a229c39> python tools/cross_cpu/probe_alignment.py [--json OUT]

Needs torch, numpy, einops, kornia 0.8.0 (upstream's), safetensors and diffusers (the fixture's tiny VAE); cv2 is
stubbed when absent (the warp does not use it). Fixtures: ``$LATENTSYNC_PARITY_FIXTURES`` or ../shared/fixtures/upstream.
Nothing of upstream is copied: its module is imported from the checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def upstream_module(checkout: Path):
    """upstream's ``latentsync/utils/affine_transform.py``, loaded by path (its package shares our name)."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    spec = importlib.util.spec_from_file_location("upstream_affine", checkout / "latentsync/utils/affine_transform.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.double() - b.double()).abs()
    return {"max": float(d.max()) if d.numel() else 0.0, "n_diff": int((d > 0).sum()),
            "frac": round(float((d > 0).double().mean()), 6) if d.numel() else 0.0}


def upstream_align(up, frames: torch.Tensor, points: torch.Tensor, resolution: int):
    """Upstream's matrices and raw crops, frame by frame in order (its smoothing state runs across frames)."""
    restorer = up.AlignRestore(resolution=resolution, device="cpu", dtype=torch.float32)
    mats, crops = [], []
    for frame, pts in zip(frames.numpy(), points.float().numpy()):
        crop, matrix = restorer.align_warp_face(frame.copy(), pts.copy(), smooth=True)
        mats.append(matrix[0])
        crops.append(torch.from_numpy(crop).permute(2, 0, 1))
    return torch.stack(mats), torch.stack(crops)


def kornia_theta(matrix: torch.Tensor, src_hw, dst_hw) -> torch.Tensor:
    import kornia
    from kornia.geometry.conversions import normalize_homography
    from kornia.utils.helpers import _torch_inverse_cast

    m3 = kornia.geometry.conversions.convert_affinematrix_to_homography(matrix[None])
    return _torch_inverse_cast(normalize_homography(m3, src_hw, dst_hw))[0, :2]


def probe_case(up, frames, points, resolution: int) -> dict:
    from latentsync.face import align, warp

    out = {}
    m_up, crops_up = upstream_align(up, frames, points, resolution)
    m_ours = align.matrices_from_points(points.float(), resolution, smoother=align.AlignmentSmoother())
    out["matrix"] = compare(m_ours, m_up)
    out["crops_same_matrix"] = compare(align.warp_crops(frames, m_up, resolution), crops_up)
    out["crops"] = compare(align.warp_crops(frames, m_ours, resolution), crops_up)
    cw, ch = align.crop_size(resolution)
    height, width = frames.shape[1:3]
    theta = torch.stack([kornia_theta(m, (height, width), (ch, cw)) for m in m_up])
    out["theta"] = compare(warp.unit_sampling_matrix(m_up, (height, width), (ch, cw)), theta)
    inverse = warp.invert_affine(m_up)
    theta_r = torch.stack([kornia_theta(m, (ch, cw), (height, width)) for m in inverse])
    out["restore_theta"] = compare(warp.unit_sampling_matrix(inverse, (ch, cw), (height, width)), theta_r)
    grid = torch.cat([F.affine_grid(t[None], [1, 3, height, width], align_corners=True) for t in theta_r])
    full = torch.stack([(grid[..., 0] + 1) / 2 * (cw - 1), (grid[..., 1] + 1) / 2 * (ch - 1)], -1)
    n = len(m_up)
    for y0, y1, x0, x1 in ((0, height, 0, width), (height // 3, height // 3 + 3, width // 4, width // 4 + 3),
                           (0, height, 0, min(5, width))):
        rows = torch.arange(y0, y1).expand(n, y1 - y0)
        cols = torch.arange(x0, x1).expand(n, x1 - x0)
        x, y = warp.sample_positions(theta_r, (height, width), (ch, cw), rows, cols)
        out[f"restore_grid_{y1 - y0}x{x1 - x0}"] = compare(torch.stack([x, y], -1), full[:, y0:y1, x0:x1])
    return out, m_up, crops_up


def chunk0_latents(fixtures: Path, faces: torch.Tensor) -> dict:
    """rel-L2 of the chunk-0 posterior samples from ``faces`` (the 6 source faces) against the golden data."""
    from cpu_torchvision import stub_registrations_if_needed

    stub_registrations_if_needed()
    import parity.test_pipeline_e2e as e2e
    from latentsync.pipeline.length import plan_length
    from latentsync.pipeline.sampler import LipsyncSampler, SamplerOptions, encode_faces

    manifest = json.loads((fixtures / "manifest.json").read_text())
    params, data, unet, vae = e2e.e2e.__wrapped__(fixtures, manifest)
    index = plan_length(faces.shape[0], params["n_output_frames"], "pingpong").source_index
    sampler = LipsyncSampler(unet, SamplerOptions(seed=params["seed"], noise_device="cpu", chunk_frames=params["num_frames"]),
                             latent_hw=(faces.shape[-1] // 8,) * 2, device="cpu", dtype=torch.float32)
    enc = encode_faces(vae, faces[index], e2e.upstream_mask(fixtures, faces.shape[-1])).slice(0, params["chunk_sizes"][0])
    result = {}
    for key, mean, logvar in (("chunk0_masked_image_latents", enc.masked_mean, enc.masked_logvar),
                              ("chunk0_ref_latents", enc.ref_mean, enc.ref_logvar)):
        got = sampler._posterior(mean, logvar) * 0.18215
        result[key] = e2e.rel_l2(got, data[key][0].permute(1, 0, 2, 3))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    args = ap.parse_args()
    checkout = Path(os.environ.get("LS_UPSTREAM", ""))
    if not (checkout / "latentsync/utils/affine_transform.py").is_file():
        sys.exit("Set LS_UPSTREAM to an extracted bytedance/LatentSync checkout (commit a229c39).")
    fixtures = Path(os.environ.get("LATENTSYNC_PARITY_FIXTURES", REPO.parent / "shared" / "fixtures" / "upstream"))
    from safetensors.torch import load_file

    from latentsync.face.resize import lanczos4_u8

    torch.set_num_threads(2)
    up = upstream_module(checkout)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    report = {"cpu": cpu, "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}
    golden = load_file(str(fixtures / "affine_restore_mask.safetensors"))
    for res in (256, 512):
        case, m_up, crops_up = probe_case(up, golden["frames"], golden["landmarks3"], res)
        warped = golden[f"r{res}_warped"].permute(0, 3, 1, 2)
        case["upstream_vs_golden_matrix"] = compare(m_up, golden[f"r{res}_affine"])
        case["upstream_vs_golden_crops"] = compare(crops_up[-warped.shape[0]:], warped)
        report[f"affine_{res}"] = case
    e2e_data = load_file(str(fixtures / "pipeline_e2e.safetensors"))
    case, m_up, crops_up = probe_case(up, e2e_data["video_frames"], e2e_data["landmarks3"], 256)
    report["pipeline_e2e"] = case
    report["pipeline_e2e"]["chunk0_rel_l2_upstream_faces"] = chunk0_latents(fixtures, lanczos4_u8(crops_up, (256, 256)))
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
