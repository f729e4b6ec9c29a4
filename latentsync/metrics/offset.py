"""Audio offset fix, as upstream's data preprocessing (``preprocess/sync_av.py``): SyncNet measures how many frames
the audio is off, and the audio is shifted by that much.

Upstream runs ``ffmpeg -itsoffset offset/25 -i video -map 1:a``: a positive offset (the sound comes before the
lips) delays the audio by ``offset / 25`` s. Here the shift is sample-exact on the waveform at its own rate
(``round(offset * rate / 25)`` samples): delaying inserts silence at the start and drops as many samples at the
end, advancing drops samples at the start and pads the end with silence, so the length never changes. A clip
that cannot be scored (too short, no face, silence) keeps its audio, with the reason in the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import torch

from .score import SyncModels, SyncOptions, SyncScore, score_clip
from .sync import FPS, VSHIFT

DEFAULT_MAX_SECONDS = 30.0  # the files' offset is measured on their first 30 s


@dataclass
class OffsetFix:
    """What the fix did: the measured score, the shift applied (frames at 25 fps and samples), and why not."""

    score: SyncScore
    frames: int = 0
    samples: int = 0
    applied: bool = False
    reason: str = ""

    def report(self) -> str:
        """One line: the shift, or why the audio was left as it is."""
        if self.applied:
            how = "delayed" if self.frames > 0 else "advanced"
            return (f"audio {how} by {abs(self.frames)} frame{'s' if abs(self.frames) != 1 else ''} at 25 fps "
                    f"({abs(self.samples)} samples); {self.score.report()}")
        return f"audio unchanged: {self.reason}"

    def as_dict(self) -> dict:
        """JSON-ready record."""
        return {"applied": self.applied, "offset_frames": self.frames, "shift_samples": self.samples,
                "reason": self.reason or None, "report": self.report(), "score": self.score.as_dict()}


def shift_samples(frames: int, sample_rate: int, fps: float | Fraction = FPS) -> int:
    """Samples of ``frames`` video frames at ``fps`` (upstream: 25) for audio at ``sample_rate``, rounded."""
    return int(round(Fraction(int(frames)) * int(sample_rate) / Fraction(fps).limit_denominator(1_000_000)))


def shift_audio(waveform: torch.Tensor, samples: int) -> torch.Tensor:
    """Delay (``samples > 0``) or advance (``< 0``) a waveform (..., T) by whole samples, padding with silence and
    keeping its length."""
    length = int(waveform.shape[-1])
    if samples == 0:
        return waveform.clone()
    out = torch.zeros_like(waveform)
    n = min(abs(int(samples)), length)
    if samples > 0:
        out[..., n:] = waveform[..., :length - n]
    else:
        out[..., :length - n] = waveform[..., n:]
    return out


def fix_offset(frames: torch.Tensor, waveform: torch.Tensor, sample_rate: int, fps: float | Fraction,
               models: SyncModels, options: Optional[SyncOptions] = None, *, detect: bool = True,
               min_confidence: float = 0.0, max_offset: int = VSHIFT) -> tuple[torch.Tensor, OffsetFix]:
    """Measure the offset of ``waveform`` (C, T) or (T,) at ``sample_rate`` against ``frames`` at ``fps`` and return
    the shifted waveform with the record. The audio is left as is when the clip is not scorable, the confidence is
    below ``min_confidence`` or the offset is beyond ``max_offset`` frames (upstream's data filter: 3 and 6)."""
    from ..audio.waveform import to_16k_mono

    wav16 = to_16k_mono(waveform, sample_rate)
    score = score_clip(frames, wav16, fps, models, options, detect=detect)
    if not score.scorable:
        return waveform.clone(), OffsetFix(score, reason=score.report())
    if score.confidence < min_confidence:
        return waveform.clone(), OffsetFix(score, score.offset, reason=(
            f"confidence {score.confidence:.2f} is below {min_confidence:g}, the offset {score.offset:+d} is not "
            "trusted"))
    if abs(score.offset) > max_offset:
        return waveform.clone(), OffsetFix(score, score.offset, reason=(
            f"the offset {score.offset:+d} frames is beyond {max_offset}"))
    if score.offset == 0:
        return waveform.clone(), OffsetFix(score, 0, reason=f"already in sync (offset 0); {score.report()}")
    samples = shift_samples(score.offset, sample_rate)
    return shift_audio(waveform, samples), OffsetFix(score, score.offset, samples, applied=True)


def write_wav(path: str | os.PathLike, waveform: torch.Tensor, sample_rate: int) -> str:
    """A float32 wav of (C, T) samples (exact: no re-quantisation)."""
    import av
    import numpy as np

    wave = waveform if waveform.dim() == 2 else waveform[None]
    layout = {1: "mono", 2: "stereo"}.get(int(wave.shape[0]))
    if layout is None:
        wave, layout = wave.mean(0, keepdim=True), "mono"
    with av.open(os.fspath(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=int(sample_rate), layout=layout)
        packed = np.ascontiguousarray(wave.float().numpy().T.reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate = int(sample_rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return os.fspath(path)


class FileOffsetFixer:
    """For the command line: measures a video's offset against an audio file and writes the shifted audio, loading
    SyncNet v2 and S3FD on first use (ModelFilesMissing names them when they are absent)."""

    def __init__(self, models_root: str, device: torch.device | str = "cpu", *, allow_download: bool = True,
                 max_seconds: float = DEFAULT_MAX_SECONDS, options: Optional[SyncOptions] = None):
        self.models_root, self.device, self.allow_download = models_root, device, allow_download
        self.max_seconds, self.options = max_seconds, options
        self._models: Optional[SyncModels] = None

    def models(self) -> SyncModels:
        """SyncNet v2 + S3FD, loaded once."""
        if self._models is None:
            from .files import load_sync_models

            self._models = load_sync_models(self.models_root, device=self.device, allow_download=self.allow_download)
        return self._models

    def fix(self, video: str | os.PathLike, audio: str | os.PathLike, out_wav: str | os.PathLike) -> OffsetFix:
        """Measure on the first ``max_seconds`` of ``video`` and write all of ``audio``, shifted, to ``out_wav``."""
        from ..audio.waveform import load_audio
        from ..io.decode import read_video
        from ..io.image import is_image_path
        from ..io.probe import probe_video
        from .score import unscorable

        if is_image_path(video):
            reason = "a still image has no lip motion to measure an offset against"
            return OffsetFix(unscorable(reason), reason=f"not scorable: {reason}")
        info = probe_video(video, exact=False)
        count = max(1, int(self.max_seconds * float(info.fps)))
        decoded = read_video(video, count=min(count, info.num_frames) if info.num_frames else count)
        waveform, rate = load_audio(audio)
        head = waveform[:, :shift_samples(decoded.frames.shape[0], rate, info.fps) or 1]
        _, record = fix_offset(decoded.frames, head, rate, info.fps, self.models(), self.options)
        shifted = shift_audio(waveform, record.samples) if record.applied else waveform
        write_wav(out_wav, shifted, rate)
        return record
