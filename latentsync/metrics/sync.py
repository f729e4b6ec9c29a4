"""SyncNet v2 scoring of one face track, as upstream's ``SyncNetEval.evaluate``.

With ``n = min(frames, samples // 640)`` (25 fps video, 16 kHz audio), windows ``i = 0 .. n - 6`` (upstream
drops the last complete window) pair lips of frames ``i .. i+4`` with MFCC rows ``4i .. 4i+19``. Every lip
embedding is compared with the audio embeddings ``vshift`` windows either side (zero vectors past the ends,
``pairwise_distance`` with its 1e-6) and the distances are averaged over windows per offset. The minimum is
the distance (LSE-D), ``median - minimum`` the confidence (LSE-C), ``vshift - argmin`` the offset in frames
(positive: the sound comes before the lips, i.e. the audio is early; upstream's preprocessing then delays the
audio by that many frames). Per window: the distance at the best offset, and upstream's framewise
confidence ``medfilt(median - distance, 9)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..configs import AUDIO_SAMPLE_RATE, UPSTREAM_FPS
from .crops import medfilt
from .mfcc import mfcc_from_waveform
from .syncnet_v2 import LIP_FRAMES, MFCC_PER_FRAME, MFCC_WINDOW, SyncNetV2

VSHIFT = 15
FPS = int(UPSTREAM_FPS)  # SyncNet's evaluation grid
SAMPLES_PER_FRAME = AUDIO_SAMPLE_RATE // FPS  # 640
CURVE_KERNEL = 9


def num_windows(num_frames: int, num_samples: int) -> int:
    """Windows upstream scores: ``min(frames, samples // 640) - 5`` (0 when too short)."""
    return max(0, min(num_frames, num_samples // SAMPLES_PER_FRAME) - LIP_FRAMES)


def min_frames(vshift: int = VSHIFT) -> int:
    """Frames (at 25 fps) a clip needs so that at least one window sees every offset without padding."""
    return LIP_FRAMES + 2 * vshift + 1


@dataclass
class SyncResult:
    """Scores of one face track (frame numbers at 25 fps)."""

    offset: int  # AV offset in frames (positive: the audio is early; delay it by this many frames)
    distance: float  # minimum mean distance over offsets (LSE-D)
    confidence: float  # median - minimum (LSE-C)
    offset_distances: torch.Tensor  # (2*vshift+1,) mean distance per offset, offset +vshift first
    window_distances: torch.Tensor  # (W,) distance per window at the best offset
    window_confidence: torch.Tensor  # (W,) upstream's framewise confidence
    start_frame: int = 0  # first frame of the track in the clip

    @property
    def num_windows(self) -> int:
        return int(self.window_distances.shape[0])


def to_network_frames(crops: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGB crops (n, 224, 224, 3) -> the lip tower's input layout (1, 3, n, 224, 224), BGR 0..255."""
    return crops.flip(-1).permute(3, 0, 1, 2)[None].to(dtype)


CropSource = Callable[[int, int], torch.Tensor]  # (start, stop) -> uint8 RGB crops (stop - start, 224, 224, 3)


def crop_source(crops: torch.Tensor) -> CropSource:
    """A :data:`CropSource` over crops already in memory."""
    return lambda start, stop: crops[start:stop]


@torch.no_grad()
def lip_embeddings(model: SyncNetV2, crops: CropSource | torch.Tensor, windows: int, *, batch: int = 20,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """(windows, D) float32 CPU embeddings of 5-frame windows over uint8 RGB crops (a tensor, or a source
    that cuts them batch by batch so a long track never sits in memory)."""
    source = crop_source(crops) if isinstance(crops, torch.Tensor) else crops
    param = next(model.parameters())
    out = []
    for start in range(0, windows, batch):
        stop = min(windows, start + batch)
        clip = to_network_frames(source(start, stop + LIP_FRAMES - 1).to(param.device), param.dtype)
        windows_in = clip.unfold(2, LIP_FRAMES, 1)[0].permute(1, 0, 4, 2, 3)  # (w, 3, 5, H, W)
        out.append(model.forward_lip(windows_in.contiguous()).float().cpu())
        if progress is not None:
            progress(stop - start)
    return torch.cat(out) if out else torch.zeros(0, model.netfclip[-1].out_features)


@torch.no_grad()
def audio_embeddings(model: SyncNetV2, mfcc: torch.Tensor, windows: int, *, batch: int = 20) -> torch.Tensor:
    """(windows, D) float32 CPU embeddings of MFCC (13, T) windows ``[4i, 4i + 20)``."""
    param = next(model.parameters())
    need = MFCC_PER_FRAME * (windows - 1) + MFCC_WINDOW if windows else 0
    if mfcc.shape[1] < need:
        raise ValueError(f"audio_embeddings: {windows} windows need {need} MFCC rows, got {mfcc.shape[1]}.")
    out = []
    for start in range(0, windows, batch):
        stop = min(windows, start + batch)
        seg = mfcc[:, MFCC_PER_FRAME * start: MFCC_PER_FRAME * (stop - 1) + MFCC_WINDOW]
        wins = seg.unfold(1, MFCC_WINDOW, MFCC_PER_FRAME).permute(1, 0, 2)[:, None]  # (w, 1, 13, 20)
        out.append(model.forward_aud(wins.to(param.device, param.dtype).contiguous()).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.netfcaud[-1].out_features)


def offset_distances(lips: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(W, 2*vshift+1) distances of lip window i to audio windows i-vshift .. i+vshift (zeros past the ends)."""
    padded = F.pad(audio, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1)[: lips.shape[0]].transpose(1, 2).contiguous()  # (W, 2v+1, D)
    return F.pairwise_distance(lips[:, None, :].expand_as(shifted).contiguous(), shifted)


def sync_result(dists: torch.Tensor, vshift: int = VSHIFT, start_frame: int = 0) -> SyncResult:
    """Offset, LSE-D, LSE-C and curves from per-window distances (W, 2*vshift+1)."""
    mean = dists.T.contiguous().mean(1)  # upstream's (offsets, windows) layout, reduced along windows
    best = int(torch.argmin(mean))
    median = torch.median(mean)
    per_window = dists[:, best]
    curve = medfilt((median - per_window).numpy().astype(np.float64), CURVE_KERNEL)
    return SyncResult(offset=vshift - best, distance=float(mean[best]), confidence=float(median - mean[best]),
                      offset_distances=mean, window_distances=per_window,
                      window_confidence=torch.from_numpy(curve).float(), start_frame=start_frame)


def score_track(model: SyncNetV2, crops: CropSource | torch.Tensor, num_crops: int, wav16k: torch.Tensor, *,
                vshift: int = VSHIFT, start_frame: int = 0, batch: int = 20,
                progress: Callable[[int], None] | None = None) -> SyncResult | None:
    """Score ``num_crops`` uint8 RGB face crops at 25 fps against the 16 kHz audio that starts with the first
    crop (upstream cuts each track's audio out of the clip); None when there is no complete window."""
    windows = num_windows(num_crops, int(wav16k.shape[-1]))
    if windows <= 0:
        return None
    mfcc = mfcc_from_waveform(wav16k)
    lips = lip_embeddings(model, crops, windows, batch=batch, progress=progress)
    audio = audio_embeddings(model, mfcc, windows, batch=batch)
    return sync_result(offset_distances(lips, audio, vshift), vshift, start_frame)


def mean_result(results: list[SyncResult]) -> tuple[int, float, float]:
    """Upstream's summary over tracks: (int(mean offset), mean confidence, mean distance)."""
    count = len(results)
    offset = int(math.fsum(r.offset for r in results) / count)
    return offset, math.fsum(r.confidence for r in results) / count, math.fsum(r.distance for r in results) / count
