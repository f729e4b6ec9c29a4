"""Length policies: which input frame each output frame shows when audio and video lengths differ.

Pure index arithmetic. "Audio frames" is the audio's length in video frames (upstream: the number of
whisper chunks), computed by the caller. A 1-frame video is a still image: it is held for the whole
audio under every policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from numbers import Real

import torch

from ..configs import LENGTH_POLICIES
from ..io.timing import samples_for_frames

POLICIES = LENGTH_POLICIES


@dataclass(frozen=True)
class LengthPlan:
    """Output frames and how the audio must change to match them."""

    source_index: torch.Tensor
    """(num_frames,) int64: the input video frame shown at each output frame."""
    num_frames: int
    """Output length in frames."""
    audio_pad_frames: int
    """Frames of silence the audio needs at its end to cover the output (0 if none)."""
    audio_trim_frames: int
    """Audio frames beyond the output that are dropped (0 if none)."""
    policy: str


def _pingpong(num_video: int, num_out: int) -> torch.Tensor:
    """Forward, backward, forward, ...: pass k plays the clip reversed when k is odd (turning frames repeat)."""
    position = torch.arange(num_out, dtype=torch.long)
    offset = position % num_video
    backward = (position // num_video) % 2 == 1
    return torch.where(backward, num_video - 1 - offset, offset)


def plan_length(num_video_frames: int, num_audio_frames: int, policy: str = "pingpong") -> LengthPlan:
    """Plan the output frames for a video of ``num_video_frames`` driven by ``num_audio_frames`` of audio.

    pingpong: audio length; a longer video is cut, a shorter one plays forward/backward (upstream).
    loop: audio length; a shorter video repeats forward. trim: the shorter of the two.
    hold_last: audio length; a shorter video holds its last frame. pad_audio: video length; the audio
    is padded with silence or cut.
    """
    for name, value in (("num_video_frames", num_video_frames), ("num_audio_frames", num_audio_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}; is the input empty?")
    if policy not in POLICIES:
        raise ValueError(f"length policy must be one of {', '.join(POLICIES)}, got {policy!r}")

    video, audio = num_video_frames, num_audio_frames
    if video == 1 or policy in ("pingpong", "loop", "hold_last"):
        out = audio
    elif policy == "trim":
        out = min(video, audio)
    else:  # pad_audio
        out = video

    position = torch.arange(out, dtype=torch.long)
    if video == 1:
        index = torch.zeros(out, dtype=torch.long)
    elif policy == "pingpong":
        index = _pingpong(video, out)
    elif policy == "loop":
        index = position % video
    elif policy == "hold_last":
        index = position.clamp(max=video - 1)
    else:  # trim / pad_audio: out <= video
        index = position
    return LengthPlan(
        source_index=index,
        num_frames=out,
        audio_pad_frames=max(0, out - audio),
        audio_trim_frames=max(0, audio - out),
        policy=policy,
    )


def apply_to_frames(frames: torch.Tensor, plan: LengthPlan) -> torch.Tensor:
    """Reorder anything indexed by input frame along dim 0 (IMAGE (F,H,W,C), matrices, flags) to the plan."""
    if frames.shape[0] <= int(plan.source_index.max()):
        raise ValueError(
            f"the plan reads input frame {int(plan.source_index.max())} but only {frames.shape[0]} frames were given"
        )
    return frames.index_select(0, plan.source_index.to(frames.device))


def apply_to_waveform(
    waveform: torch.Tensor, sample_rate: int, plan: LengthPlan, fps: Fraction | Real
) -> torch.Tensor:
    """Pad with silence or cut the last dim of ``waveform`` to the output's duration, num_frames / fps.

    Works for (T,), (C, T) and ComfyUI's (B, C, T); the sample count is floor(num_frames / fps * rate).
    """
    target = samples_for_frames(plan.num_frames, fps, sample_rate)
    have = waveform.shape[-1]
    if have >= target:
        return waveform[..., :target]
    return torch.nn.functional.pad(waveform, (0, target - have))
