"""The sync gate in the streaming runner: the video is cut into fixed segments, each scored and regenerated on its
own (the decision itself is :func:`latentsync.metrics.gate.gate_segment`).

Segments: whole sampler chunks (16 frames) covering at least :data:`SEGMENT_SECONDS` seconds of output
(80 frames = 3.2 s at 25 fps, 96 at 30 fps), from the first frame on; a tail shorter than that joins the previous
segment (a video shorter than one segment is one segment). Three seconds, not two: upstream's face tracks need more
than 50 frames at 25 fps (``min_track``), and SyncNet's 5-frame windows with the +-15-frame offset search need 36.
Segments start on chunk boundaries, so a retry draws the noise of its own chunks from its seed and the other
segments are untouched. In a gated run the runner's window is the segment, so memory stays bounded by one segment
(and its current attempt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Union

import torch

from ..configs import AUDIO_SAMPLE_RATE, SYNC_GATE_RETRIES
from ..metrics.gate import GateDecision
from ..option_checks import SPECS

SEGMENT_SECONDS = 3.0
DEFAULT_RETRIES = SYNC_GATE_RETRIES

MIN_SYNC, SYNC_RETRIES = SPECS["min_sync"], SPECS["sync_retries"]


def gate_segments(num_frames: int, fps: Union[Fraction, float], chunk_frames: int,
                  seconds: float = SEGMENT_SECONDS) -> list[tuple[int, int]]:
    """Frame ranges ``[start, stop)`` of the gate's segments: whole chunks, each at least ``seconds`` long except
    when the video is shorter; a short tail is merged into the previous segment."""
    if num_frames <= 0:
        return []
    least = max(1, math.ceil(float(seconds) * float(fps)))
    length = math.ceil(least / chunk_frames) * chunk_frames
    spans = [(a, min(a + length, num_frames)) for a in range(0, num_frames, length)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < least:
        spans[-2:] = [(spans[-2][0], spans[-1][1])]
    return spans


def segment_audio(wav16k: torch.Tensor, start: int, stop: int, fps: Union[Fraction, float],
                  timestamps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The 16 kHz samples heard during output frames ``[start, stop)`` (their real times when ``timestamps``)."""
    if timestamps is not None:
        t0 = float(timestamps[start])
        t1 = float(timestamps[stop]) if stop < len(timestamps) else t0 + (stop - start) / float(fps)
    else:
        t0, t1 = start / float(fps), stop / float(fps)
    return wav16k[..., int(round(t0 * AUDIO_SAMPLE_RATE)):int(round(t1 * AUDIO_SAMPLE_RATE))]


@dataclass
class GatedSegment:
    """One segment of a gated run: its output frames and what the gate did."""

    start: int
    stop: int
    decision: GateDecision

    def line(self) -> str:
        """``frames a-b: <decision>`` for people."""
        return f"frames {self.start}-{self.stop - 1}: {self.decision.report()}"

    def as_dict(self) -> dict:
        """JSON-ready: the frame range and the decision record."""
        return {"first_frame": self.start, "last_frame": self.stop - 1, **self.decision.as_dict()}


def gate_summary(segments: list[GatedSegment]) -> str:
    """``sync gate (min X): n accepted, n passed through, n not scorable`` over a run's segments."""
    if not segments:
        return "sync gate: no segment"
    counts = {k: sum(s.decision.decision == k for s in segments) for k in ("accepted", "passed_through", "not_scorable")}
    first = segments[0].decision
    return (f"sync gate (min {first.min_sync:g}, up to {first.max_retries} retries): {counts['accepted']} accepted, "
            f"{counts['passed_through']} passed through, {counts['not_scorable']} not scorable "
            f"of {len(segments)} segment(s)")
