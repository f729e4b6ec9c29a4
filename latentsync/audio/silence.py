"""Which video frames fall in a pause of the speech (to keep the original mouth there).

A small energy detector, no model: 10 ms block levels, a threshold relative to the clip's loud level (with an
absolute floor), hysteresis (a run above the low threshold is speech only if it also crosses the high one),
pauses shorter than ``min_silence_s`` ignored, and speech widened by ``pad_s`` on both sides so the mouth
starts moving just before a sound and settles just after it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..configs import AUDIO_SAMPLE_RATE

BLOCK_S = 0.010
LOUD_QUANTILE = 0.99  # "loud level" of the clip: robust against a few clicks
_POWER_EPS = 1e-12  # -120 dBFS: digital silence


def block_levels_db(wav: torch.Tensor, sample_rate: int = AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """Mean power of consecutive 10 ms blocks in dBFS ``(ceil(T / block),)``; the last block is zero-padded."""
    block = max(1, round(sample_rate * BLOCK_S))
    padded = F.pad(wav.to(torch.float32), (0, (-wav.numel()) % block))
    power = padded.view(-1, block).square().mean(dim=1)
    return 10.0 * torch.log10(power + _POWER_EPS)


def _runs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run-length encoding of a 1-D bool tensor: (value per run, length per run)."""
    return torch.unique_consecutive(mask, return_counts=True)


def _speech_blocks(levels: torch.Tensor, threshold_db: float, floor_db: float, hysteresis_db: float) -> torch.Tensor:
    loud = torch.quantile(levels, LOUD_QUANTILE)
    low = torch.clamp(loud + threshold_db, min=floor_db)
    above_low = levels > low
    above_high = levels > low + hysteresis_db
    # Number the runs above the low threshold; a run is speech if any of its blocks is above the high one.
    starts = above_low & ~F.pad(above_low[:-1], (1, 0), value=False)
    run_id = torch.cumsum(starts.long(), dim=0) * above_low.long()
    loud_runs = torch.zeros(int(run_id.max()) + 1, dtype=torch.long, device=levels.device)
    loud_runs.index_add_(0, run_id, above_high.long())
    loud_runs[0] = 0
    return loud_runs[run_id] > 0


def _fill_short_pauses(speech: torch.Tensor, min_blocks: int) -> torch.Tensor:
    values, lengths = _runs(speech)
    values = values | (lengths < min_blocks)
    return torch.repeat_interleave(values, lengths)


def silent_frames(
    wav16k: torch.Tensor,
    num_frames: int,
    fps: float,
    *,
    threshold_db: float = -40.0,
    min_silence_s: float = 0.3,
    pad_s: float = 0.1,
    floor_db: float = -60.0,
    hysteresis_db: float = 10.0,
    sample_rate: int = AUDIO_SAMPLE_RATE,
) -> torch.Tensor:
    """``(num_frames,)`` bool: True where video frame ``i`` (shown over ``[i/fps, (i+1)/fps)``) is a pause.

    A 10 ms block is quiet when its level is below ``max(loud + threshold_db, floor_db)`` dBFS, ``loud`` being
    the clip's 99th-percentile block level; a louder run is speech only if it exceeds that by
    ``hysteresis_db`` somewhere. Pauses shorter than ``min_silence_s`` count as speech; speech is extended
    by ``pad_s`` each side. A frame is silent only if all of its time span is; frames past the end of the
    audio are silent unless within ``pad_s`` of speech. The result is on ``wav16k``'s device.
    """
    if not isinstance(wav16k, torch.Tensor) or wav16k.ndim != 1:
        raise ValueError("silent_frames expects a 1-D mono waveform tensor (T,); use to_16k_mono first.")
    if wav16k.numel() == 0:
        raise ValueError("silent_frames: the audio is empty.")
    if not bool(torch.isfinite(wav16k).all()):
        raise ValueError("silent_frames: the waveform contains NaN or infinite samples.")
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}.")
    if int(num_frames) != num_frames or num_frames < 0:
        raise ValueError(f"num_frames must be an integer >= 0, got {num_frames!r}.")
    if min_silence_s < 0 or pad_s < 0:
        raise ValueError(f"min_silence_s and pad_s must be >= 0, got {min_silence_s} and {pad_s}.")
    num_frames = int(num_frames)
    device = wav16k.device
    if num_frames == 0:
        return torch.zeros(0, dtype=torch.bool, device=device)

    speech = _speech_blocks(block_levels_db(wav16k, sample_rate), threshold_db, floor_db, hysteresis_db)
    blocks_per_s = 1.0 / BLOCK_S
    # Frame spans in block units (snapped so that grid-aligned boundaries stay exact).
    frame_ids = torch.arange(num_frames + 1, dtype=torch.float64, device=device)
    edges = frame_ids * blocks_per_s / fps
    first = torch.floor(edges[:-1] + 1e-9).long()
    end = torch.ceil(edges[1:] - 1e-9).long()
    total = max(speech.numel(), int(end[-1]))
    speech = F.pad(speech, (0, total - speech.numel()), value=False)  # past the audio: silence

    speech = _fill_short_pauses(speech, round(min_silence_s * blocks_per_s))
    pad = round(pad_s * blocks_per_s)
    if pad:
        speech = F.max_pool1d(speech.float()[None, None], 2 * pad + 1, stride=1, padding=pad)[0, 0] > 0

    speech_before = F.pad(torch.cumsum(speech.long(), dim=0), (1, 0))
    end = torch.maximum(end, first + 1)  # a frame always overlaps at least one block
    return (speech_before[end] - speech_before[first]) == 0
