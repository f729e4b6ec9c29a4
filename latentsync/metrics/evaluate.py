"""Upstream's evaluation suite over two folders of videos (real = the sources, fake = the lip-synced results).

* **LSE-C / LSE-D**: SyncNet v2 confidence and minimum distance of every video against its own audio track, as
  ``eval/eval_sync_conf.py`` (:func:`.score.score_clip`), averaged over the scorable videos of each folder.
* **SyncNet accuracy**: StableSyncNet (``eval/eval_syncnet_acc.py``) on deterministic pairs instead of upstream's
  random ones: for every 16-frame block of a video's longest face track, the block with its own mel window
  (label 1) and a block half the track away with the same window (label 0); a pair counts as correct when
  ``cosine similarity > 0.5`` equals its label. Upstream feeds aligned 256 px face videos; here the faces are the
  SyncNet v2 track crops (224 px, resized to the config's resolution), or the frames themselves when they
  already are face videos (``faces="frames"``). Only when ``stable_syncnet.pt`` is given.
* **PSNR / SSIM outside the face**: between each fake video and the real one of the same file stem, over the
  pixels outside every face region of the real video (a square of :data:`EXCLUDE_SCALE` times the S3FD box side
  around each tracked box, widened by the SSIM window's radius), frames 0..min(n_real, n_fake). PSNR pools the
  squared error of all those pixels of a video (infinite when they are identical); SSIM is the Gaussian-window
  SSIM (11 px, sigma 1.5, on BT.601 luma) averaged over them. LatentSync only repaints inside the face, so they
  are infinite / 1 when the output keeps the source's pixels (lossless); through a lossy mp4 they measure the
  codec's loss.
* **FVD** is not computed: upstream's I3D (``i3d_torchscript.pt``) is a TorchScript archive, which cannot be
  read with ``torch.load(weights_only=True)`` (see docs/sync_score.md); the report says so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .score import SyncModels, SyncOptions, SyncScore, score_clip

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
EXCLUDE_SCALE = 2.0  # face region excluded from PSNR/SSIM: this many times the S3FD box side, around its centre
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
FVD_NOTE = ("FVD not computed: upstream's I3D network (auxiliary/i3d_torchscript.pt) is a TorchScript archive, "
            "which cannot be loaded with torch.load(weights_only=True); see docs/sync_score.md")


@dataclass
class VideoEval:
    """One video's results (None where a metric could not be computed, with the reason in ``notes``)."""

    name: str
    score: dict
    accuracy: Optional[float] = None
    accuracy_pairs: int = 0
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    pixels_compared: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready (an infinite PSNR is written as the string "inf")."""
        return {"name": self.name, "sync": self.score, "syncnet_accuracy": self.accuracy,
                "accuracy_pairs": self.accuracy_pairs, "psnr_outside_face": _json_number(self.psnr),
                "ssim_outside_face": self.ssim, "pixels_compared": self.pixels_compared, "notes": self.notes}


def _json_number(x: Optional[float]) -> Any:
    if x is None:
        return None
    return "inf" if math.isinf(x) else float(x)


def video_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{stem: path} of the videos directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of videos.")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()}


def pair_files(real: str | os.PathLike, fake: str | os.PathLike) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pairs (stem, real, fake) by file stem, and the stems found only among the real / only among the fake."""
    r, f = video_files(real), video_files(fake)
    both = sorted(r.keys() & f.keys())
    return [(s, r[s], f[s]) for s in both], sorted(r.keys() - f.keys()), sorted(f.keys() - r.keys())


# ------------------------------------------------------------------------------------------ PSNR / SSIM
def face_exclusion(score: SyncScore, index: np.ndarray, count: int, frame_hw: tuple[int, int],
                   margin: int = SSIM_WINDOW // 2) -> torch.Tensor:
    """(count, H, W) bool, True = outside every face region of the scored clip (source frame numbering;
    ``index`` maps 25 fps frames to source frames)."""
    h, w = frame_hw
    keep = torch.ones(count, h, w, dtype=torch.bool)
    for ts in score.tracks:
        for frame, box in zip(ts.track.frames, ts.track.boxes):
            src = int(index[int(frame)])
            if src >= count:
                continue
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            half = EXCLUDE_SCALE * max(box[2] - box[0], box[3] - box[1]) / 2 + margin
            x0, x1 = max(0, int(math.floor(cx - half))), min(w, int(math.ceil(cx + half)))
            y0, y1 = max(0, int(math.floor(cy - half))), min(h, int(math.ceil(cy + half)))
            keep[src, y0:y1, x0:x1] = False
    return keep


def _luma(frames: torch.Tensor) -> torch.Tensor:
    x = frames.double()
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[:, None]  # (n, 1, H, W)


def _gaussian(device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian of the SSIM window (its outer product is the 2-D window)."""
    t = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-(t ** 2) / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (n, H, W) of two uint8 RGB batches (n, H, W, 3) on luma, Gaussian window, reflect padding."""
    x, y = _luma(a), _luma(b)
    g = _gaussian(x.device)
    rows, cols = g.view(1, 1, -1, 1).expand(5, 1, -1, 1), g.view(1, 1, 1, -1).expand(5, 1, 1, -1)
    pad = SSIM_WINDOW // 2
    # The window is separable: a column pass then a row pass (22 products a pixel instead of 121), the five
    # blurred maps as the channels of one grouped convolution.
    stack = F.pad(torch.cat([x, y, x * x, y * y, x * y], 1), (pad, pad, pad, pad), mode="reflect")
    mx, my, xx, yy, xy = F.conv2d(F.conv2d(stack, rows, groups=5), cols, groups=5).split(1, 1)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s[:, 0]


@dataclass
class _Sums:
    squared: float = 0.0
    ssim: float = 0.0
    pixels: int = 0

    def add(self, real: torch.Tensor, fake: torch.Tensor, keep: torch.Tensor) -> None:
        diff = (real.double() - fake.double()) ** 2  # (n, H, W, 3)
        self.squared += float(diff[keep].sum())
        self.ssim += float(ssim_map(real, fake)[keep].sum())
        self.pixels += int(keep.sum())

    def result(self) -> tuple[Optional[float], Optional[float]]:
        if not self.pixels:
            return None, None
        mse = self.squared / (3 * self.pixels)
        psnr = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
        return psnr, min(1.0, self.ssim / self.pixels)


def outside_face_quality(real: torch.Tensor, fake: torch.Tensor, keep: torch.Tensor,
                         batch: int = 16) -> tuple[Optional[float], Optional[float], int]:
    """(PSNR dB, SSIM, pixels) of two uint8 clips over the ``keep`` pixels of their common frames."""
    count = min(real.shape[0], fake.shape[0], keep.shape[0])
    sums = _Sums()
    for start in range(0, count, batch):
        stop = min(count, start + batch)
        sums.add(real[start:stop], fake[start:stop], keep[start:stop])
    psnr, ssim = sums.result()
    return psnr, ssim, sums.pixels


# --------------------------------------------------------------------------------------- SyncNet accuracy
def accuracy_pairs(num_frames: int, block: int = 16) -> list[tuple[int, int, int]]:
    """Deterministic (frames start, mel start, label) pairs: every block with its own audio (1) and the block half
    the clip away with that audio (0)."""
    starts = list(range(0, num_frames - block + 1, block))
    if num_frames < 2 * block:
        return []
    span = num_frames - block + 1
    pairs = []
    for s in starts:
        wrong = (s + max(block, num_frames // 2)) % span
        if wrong == s:
            wrong = (s + block) % span
        pairs += [(s, s, 1), (wrong, s, 0)]
    return pairs


def stable_accuracy(model: Any, config: dict, faces: torch.Tensor, wav16k: torch.Tensor) -> tuple[Optional[float], int]:
    """StableSyncNet accuracy of one clip's face frames (n, h, w, 3) uint8 at 25 fps against its 16 kHz audio."""
    from .syncnet_accuracy import accuracy, mel_window, mel_window_length, prepare_frames, wav2lip_mel

    data = config.get("data", {})
    block, resolution = int(data.get("num_frames", 16)), int(data.get("resolution", 256))
    mel = wav2lip_mel(wav16k)
    rows = mel_window_length(block)
    pairs = [p for p in accuracy_pairs(int(faces.shape[0]), block) if int(80.0 * p[1] / 25.0) + rows <= mel.shape[1]]
    if not pairs:
        return None, 0
    frames = prepare_frames(torch.stack([faces[s:s + block] for s, _, _ in pairs]), resolution,
                            bool(data.get("lower_half", True)))
    mels = torch.stack([mel_window(mel, m, block) for _, m, _ in pairs]).float()  # (N, 1, 80, L)
    labels = torch.tensor([label for _, _, label in pairs])
    return accuracy(model, frames, mels, labels).accuracy, len(pairs)


def track_faces_crops(frames: torch.Tensor, index: np.ndarray, score: SyncScore) -> Optional[torch.Tensor]:
    """The 224 px crops (25 fps) of the clip's longest scored face track, as SyncNet v2 saw them."""
    from .crops import crop_faces, crop_geometry, crop_regions
    from .score import as_uint8

    if not score.tracks:
        return None
    track = max(score.tracks, key=lambda ts: len(ts.track)).track
    regions = crop_regions(*crop_geometry(track), (int(frames.shape[1]), int(frames.shape[2])))
    out = []
    for start in range(0, len(track), 32):
        ids = torch.as_tensor(index[track.frames[start:start + 32]], dtype=torch.long)
        out.append(crop_faces(as_uint8(frames[ids]), regions[start:start + 32]))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------- the suite
@dataclass
class EvalModels:
    """SyncNet v2 + S3FD, and StableSyncNet with its config when its file is present."""

    sync: SyncModels
    stable: Any = None
    stable_config: Optional[dict] = None


@dataclass
class EvalOptions:
    """Scoring settings and where StableSyncNet's faces come from."""

    sync: SyncOptions = field(default_factory=SyncOptions)
    faces: str = "crops"  # StableSyncNet input: "crops" (SyncNet v2 track crops) or "frames" (face videos)


def _evaluate_clip(name: str, path: Path, models: EvalModels, options: EvalOptions) -> tuple[VideoEval, Any]:
    from .media import read_clip
    from .score import frames_at_25fps

    clip = read_clip(path)
    score = score_clip(clip.frames, clip.wav16k, clip.fps, models.sync, options.sync)
    result = VideoEval(name, score.as_dict())
    index = frames_at_25fps(int(clip.frames.shape[0]), clip.fps)
    if not score.scorable:
        result.notes.append(score.report())
    if models.stable is not None:
        faces = (clip.frames[torch.as_tensor(index)] if options.faces == "frames"
                 else track_faces_crops(clip.frames, index, score))
        if faces is None:
            result.notes.append("SyncNet accuracy: no face track")
        else:
            result.accuracy, result.accuracy_pairs = stable_accuracy(models.stable, models.stable_config, faces,
                                                                     clip.wav16k)
            if result.accuracy is None:
                result.notes.append("SyncNet accuracy: fewer than 32 face frames")
    return result, (clip, score, index)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return math.fsum(vals) / len(vals) if vals else None


def _summary(results: list[VideoEval]) -> dict:
    psnrs = [r.psnr for r in results if r.psnr is not None]
    return {
        "videos": len(results), "scorable": sum(1 for r in results if r.score["scorable"]),
        "lse_c": _mean([r.score["confidence"] for r in results]), "lse_d": _mean([r.score["distance"] for r in results]),
        "syncnet_accuracy": _mean([r.accuracy for r in results]),
        "accuracy_pairs": sum(r.accuracy_pairs for r in results),
        # the mean over the finite PSNRs ("inf" when every pair is identical outside the face), and how many were
        "psnr_outside_face": _json_number(math.inf if psnrs and all(math.isinf(p) for p in psnrs)
                                          else _mean([p for p in psnrs if not math.isinf(p)])),
        "psnr_infinite": sum(1 for p in psnrs if math.isinf(p)),
        "ssim_outside_face": _mean([r.ssim for r in results]),
    }


def evaluate(real_dir: str | os.PathLike, fake_dir: str | os.PathLike, models: EvalModels,
             options: Optional[EvalOptions] = None, *, log: Optional[Callable[[str], None]] = None) -> dict:
    """The whole report (JSON-ready): per-video results of both folders, the averages and what was left out."""
    options = options or EvalOptions()
    say = log or (lambda _: None)
    pairs, only_real, only_fake = pair_files(real_dir, fake_dir)
    if not pairs:
        raise ValueError(f"no video in {fake_dir} has a same-stem video in {real_dir}; name each result like its "
                         "source (e.g. real/clip1.mp4 and fake/clip1.mp4).")
    real_results, fake_results = [], []
    for n, (stem, real_path, fake_path) in enumerate(pairs, 1):
        say(f"[{n}/{len(pairs)}] {stem}")
        real_eval, (real_clip, real_score, index) = _evaluate_clip(stem, real_path, models, options)
        fake_eval, (fake_clip, _, _) = _evaluate_clip(stem, fake_path, models, options)
        if tuple(real_clip.frames.shape[1:3]) != tuple(fake_clip.frames.shape[1:3]):
            fake_eval.notes.append(f"PSNR/SSIM: frame sizes differ ({tuple(real_clip.frames.shape[1:3])} vs "
                                   f"{tuple(fake_clip.frames.shape[1:3])})")
        else:
            count = min(int(real_clip.frames.shape[0]), int(fake_clip.frames.shape[0]))
            keep = face_exclusion(real_score, index, count, tuple(real_clip.frames.shape[1:3]))
            if not real_score.tracks:
                fake_eval.notes.append("PSNR/SSIM: no face track in the real video, whole frames compared")
            fake_eval.psnr, fake_eval.ssim, fake_eval.pixels_compared = outside_face_quality(
                real_clip.frames, fake_clip.frames, keep)
        real_results.append(real_eval)
        fake_results.append(fake_eval)
    return {
        "real_dir": str(real_dir), "fake_dir": str(fake_dir),
        "real": {"summary": _summary(real_results), "videos": [r.as_dict() for r in real_results]},
        "fake": {"summary": _summary(fake_results), "videos": [r.as_dict() for r in fake_results]},
        "unpaired": {"only_real": only_real, "only_fake": only_fake},
        "fvd": None, "fvd_note": FVD_NOTE,
        "syncnet_accuracy_note": None if models.stable is not None else
        "SyncNet accuracy not computed: stable_syncnet.pt is not in the models folder",
        "method": {"lse": "SyncNet v2, upstream's eval_sync_conf (min_track %d)" % options.sync.min_track,
                   "accuracy": f"StableSyncNet on deterministic 16-frame pairs, faces from {options.faces}",
                   "psnr_ssim": f"outside {EXCLUDE_SCALE:g}x the S3FD face box (+{SSIM_WINDOW // 2} px) of the real "
                                "video, luma SSIM (11 px Gaussian, sigma 1.5)"},
    }


def _cell(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if x == "inf":
        return "∞"
    return f"{x:.{digits}f}"


def markdown_table(report: dict) -> str:
    """The paper-style table: one row per folder."""
    lines = ["| videos | n | LSE-C ↑ | LSE-D ↓ | SyncNet acc. ↑ | FVD ↓ | PSNR outside face ↑ | SSIM outside face ↑ |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label in ("real", "fake"):
        s = report[label]["summary"]
        acc = None if s["syncnet_accuracy"] is None else 100 * s["syncnet_accuracy"]
        lines.append(f"| {label} ({report[label + '_dir']}) | {s['scorable']}/{s['videos']} | {_cell(s['lse_c'])} | "
                     f"{_cell(s['lse_d'])} | {_cell(acc, 1) + ('%' if acc is not None else '')} | - | "
                     f"{_cell(s['psnr_outside_face'])} | {_cell(s['ssim_outside_face'], 4)} |")
    notes = [report["fvd_note"]] + ([report["syncnet_accuracy_note"]] if report["syncnet_accuracy_note"] else [])
    return "\n".join(lines) + "\n\n" + "\n".join(f"* {n}" for n in notes) + "\n"
