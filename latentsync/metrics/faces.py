"""Face boxes from S3FD, as upstream's SyncNet pipeline asks for them (``S3FD.detect_faces``).

Each frame is scaled by ``scale`` (0.25 upstream) with OpenCV's bilinear resize, the network runs on a batch of
frames, offsets are decoded against the priors, boxes above ``conf_th`` (0.9 upstream) go through the network
head's NMS (IoU 0.3, at most 750) and a final NMS at IoU 0.1. Boxes are in frame pixels, best score first.

Only boxes above ``conf_th`` can survive, and a box is only ever suppressed by a higher-scored one, so running
the head's NMS on those boxes alone gives upstream's result without its 5000-candidate loop.
"""

from __future__ import annotations

import numpy as np
import torch

from ..face.resize import linear_output_size, linear_u8
from .s3fd import MEAN_RGB, VARIANCE, S3FD

SCALE = 0.25
CONF_TH = 0.9
HEAD_NMS = 0.3
HEAD_TOP_K = 750
FINAL_NMS = 0.1


def decode(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Box offsets (P, 4) of one image against priors (cx, cy, w, h) -> corners (x1, y1, x2, y2) relative to
    the image. Decoded for all priors of the image at once, as upstream, so every element goes through the
    same (vectorised or scalar) ``exp`` kernel path as there."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCE[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCE[1])
    top_left = centre - size / 2
    return torch.cat([top_left, size + top_left], 1)


def head_nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float = HEAD_NMS, top_k: int = HEAD_TOP_K) -> torch.Tensor:
    """Greedy NMS of the S3FD head (float32, its IoU expression): kept indices, best score first."""
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    order = torch.sort(scores, stable=True).indices.flip(0)  # descending; upstream pops its ascending sort's end
    x1, y1, x2, y2, area = (t[order] for t in (x1, y1, x2, y2, area))
    alive = torch.ones(order.numel(), dtype=torch.bool, device=scores.device)
    keep = []
    for i in range(order.numel()):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) == top_k:
            break
        rest = slice(i + 1, None)
        w = (torch.clamp(x2[rest], max=x2[i]) - torch.clamp(x1[rest], min=x1[i])).clamp(min=0.0)
        h = (torch.clamp(y2[rest], max=y2[i]) - torch.clamp(y1[rest], min=y1[i])).clamp(min=0.0)
        inter = w * h
        iou = inter / ((area[rest] - inter) + area[i])
        alive[rest] &= iou <= overlap
    return order[torch.tensor(keep, dtype=torch.long, device=scores.device)]


def final_nms(dets: np.ndarray, thresh: float = FINAL_NMS) -> np.ndarray:
    """Upstream's last NMS (numpy, float64, IoU without the +1): indices of kept rows, best score first."""
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][ovr <= thresh]
    return np.asarray(keep, dtype=np.int64)


def input_fits(height: int, width: int) -> bool:
    """Whether S3FD can run on an input of this size (its five 2x2 poolings, one rounding up, need >= 2 px)."""
    for side in (height, width):
        for ceil in (False, False, True, False, False):
            if side < 2:
                return False
            side = -(-side // 2) if ceil else side // 2
    return True


def frames_fit(height: int, width: int, scale: float = SCALE) -> bool:
    """Whether frames of this size can go through S3FD after upstream's scaling."""
    return input_fits(*linear_output_size(height, width, scale, scale))


def network_input(frames: torch.Tensor, scale: float = SCALE) -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3) -> the network's float input (B, 3, h, w): resized, mean subtracted."""
    h, w = linear_output_size(frames.shape[1], frames.shape[2], scale, scale)
    small = linear_u8(frames, (h, w), fx=scale, fy=scale)
    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=frames.device)
    return (small.float() - mean).permute(0, 3, 1, 2).contiguous()  # NCHW memory, as upstream (same conv kernels)


def boxes_from_outputs(loc: torch.Tensor, prob: torch.Tensor, priors: torch.Tensor, frame_hw: tuple[int, int],
                       conf_th: float = CONF_TH) -> list[np.ndarray]:
    """Network outputs of a batch -> per frame an (n, 5) float64 array ``x1, y1, x2, y2, score`` in pixels."""
    height, width = frame_hw
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=loc.device)
    out = []
    for b in range(loc.shape[0]):
        above = prob[b] > conf_th
        boxes, scores = decode(loc[b], priors)[above].cpu(), prob[b][above].cpu()
        kept = head_nms(boxes, scores)
        dets = torch.cat([boxes[kept] * scale.cpu(), scores[kept, None]], 1).numpy().astype(np.float64)
        out.append(dets[final_nms(dets)] if len(dets) else np.zeros((0, 5)))
    return out


@torch.no_grad()
def detect_faces(net: S3FD, frames: torch.Tensor, *, scale: float = SCALE, conf_th: float = CONF_TH,
                 batch: int = 8) -> list[np.ndarray]:
    """Face boxes of uint8 RGB frames ``(F, H, W, 3)`` (any device): per frame ``(n, 5)`` float64 arrays."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"detect_faces expects uint8 RGB frames (F, H, W, 3), got {frames.dtype} {tuple(frames.shape)}.")
    param = next(net.parameters())
    out: list[np.ndarray] = []
    for start in range(0, frames.shape[0], batch):
        chunk = frames[start:start + batch].to(param.device)
        loc, prob, priors = net(network_input(chunk, scale).to(param.dtype))
        out += boxes_from_outputs(loc.float(), prob.float(), priors, tuple(frames.shape[1:3]), conf_th)
    return out

