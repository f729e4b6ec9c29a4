"""Synthetic alignment points shared by the face alignment and restore tests."""

from __future__ import annotations

import math

import torch


def face_points(center, eyebrow_distance: float, angle: float = 0.0) -> torch.Tensor:
    """Three alignment points (left brow, right brow, nose) of a face centred at ``center``, rotated by ``angle``."""
    d = eyebrow_distance
    local = torch.tensor([[-d / 2, -0.3 * d], [d / 2, -0.3 * d], [0.0, 0.2 * d]], dtype=torch.float64)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return (local @ rot.T + torch.tensor(center, dtype=torch.float64)).float()
