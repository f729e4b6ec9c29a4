"""StableSyncNet's training loss: binary cross-entropy on the cosine similarity of the two embeddings.

Upstream (``latentsync/utils/util.py`` ``cosine_loss``): the similarity of the unit vision and audio embeddings is
read as the probability that frames and audio are in sync. Both towers end in a ReLU, so it lies in [0, 1], as
BCE needs. The log is clamped at -100, as torch's BCE does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sync_losses(vision: torch.Tensor, audio: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample losses (B,) float32 of embeddings (B, D) and labels (B, 1) or (B,) (1 = in sync)."""
    sims = F.cosine_similarity(vision.float(), audio.float())
    return F.binary_cross_entropy(sims, y.reshape(-1).to(sims.dtype), reduction="none")


def sync_loss(vision: torch.Tensor, audio: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch's mean loss (what upstream backpropagates)."""
    return sync_losses(vision, audio, y).mean()
