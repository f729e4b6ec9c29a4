"""Audio decoding (any container/codec FFmpeg reads, through PyAV) and conversion to 16 kHz mono.

Upstream reads audio with ``ffmpeg -i FILE -ac 1 -ar 16000 -f s16le`` and divides the int16 samples by
32768. :func:`to_16k_mono` reproduces that with the same library (libswresample, FFmpeg's default down-mix
and resampler, fed through an ``aformat`` filter exactly as the ffmpeg CLI does) on an in-memory waveform.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Any, Mapping

import numpy as np
import torch

from ..configs import AUDIO_SAMPLE_RATE

log = logging.getLogger(__name__)

TARGET_RATE = AUDIO_SAMPLE_RATE
_FRAME_SAMPLES = 1 << 15  # samples per AudioFrame pushed into the resampler
_INT16_SCALE = 32768.0


def _validate(waveform: torch.Tensor, sample_rate: Any, what: str) -> int:
    if isinstance(sample_rate, torch.Tensor):
        sample_rate = sample_rate.item()
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}: sample_rate must be a number, got {sample_rate!r}.")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"{what}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}.")
    if waveform.numel() == 0:
        raise ValueError(f"{what}: the audio is empty (shape {tuple(waveform.shape)}); give it a clip with samples.")
    if not waveform.is_floating_point():
        raise ValueError(f"{what}: waveform must be floating point in [-1, 1], got {waveform.dtype}.")
    if not bool(torch.isfinite(waveform).all()):
        raise ValueError(f"{what}: the waveform contains NaN or infinite samples; the audio source is broken.")
    return int(sample_rate)


def _as_channels_first(waveform: Any, what: str) -> torch.Tensor:
    """(T,) | (C, T) | (1, C, T) -> (C, T) float32 view/copy on the CPU."""
    wave = torch.as_tensor(waveform)
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    elif wave.ndim == 3:
        if wave.shape[0] != 1:
            raise ValueError(
                f"{what}: got a batch of {wave.shape[0]} clips (B, C, T); pass one clip (pick it with "
                "audio_from_mapping(audio, index=i))."
            )
        wave = wave[0]
    elif wave.ndim != 2:
        raise ValueError(f"{what}: expected a waveform shaped (T,), (C, T) or (1, C, T), got {tuple(wave.shape)}.")
    return wave


def audio_from_mapping(audio: Mapping[str, Any], index: int = 0) -> tuple[torch.Tensor, int]:
    """``(waveform (C, T), sample_rate)`` of clip ``index`` in a ComfyUI AUDIO mapping, without modifying it.

    Works for any Mapping with ``"waveform"`` ``(B, C, T)`` and ``"sample_rate"`` (VideoHelperSuite passes a
    lazy one, so only these two keys are read).
    """
    if not isinstance(audio, Mapping):
        raise ValueError(f"audio must be a ComfyUI AUDIO mapping with 'waveform' and 'sample_rate', got {type(audio).__name__}.")
    try:
        waveform = audio["waveform"]
        sample_rate = audio["sample_rate"]
    except KeyError as exc:
        raise ValueError(f"audio mapping has no {exc.args[0]!r} entry; expected ComfyUI AUDIO ('waveform', 'sample_rate').") from None
    wave = torch.as_tensor(waveform)
    if wave.ndim == 3:
        if not -wave.shape[0] <= index < wave.shape[0]:
            raise ValueError(f"audio batch has {wave.shape[0]} clips; index {index} is out of range.")
        wave = wave[index]
    wave = _as_channels_first(wave, "audio")
    return wave, _validate(wave, sample_rate, "audio")


def _is_int16_grid(wave: torch.Tensor) -> bool:
    scaled = wave * _INT16_SCALE
    return bool((scaled == scaled.round()).all()) and bool(((scaled >= -32768) & (scaled <= 32767)).all())


def _layout_for(channels: int) -> Any:
    import av

    try:  # "<N>c" is FFmpeg's default layout for N channels (what it assumes for an untagged stream)
        return av.AudioLayout(f"{channels}c")
    except ValueError as exc:
        raise ValueError(
            f"Cannot down-mix {channels} audio channels: FFmpeg has no default layout for them (at most 8); "
            "mix the audio to mono or stereo first."
        ) from exc


def _swr_to_16k_mono(wave: np.ndarray, sample_rate: int, quantize: bool) -> np.ndarray:
    """Push (C, T) samples through libswresample; int16-valued input goes in as s16 like a PCM file.

    Frames are packed (interleaved): PyAV crashes on planar frames of 8 channels (see ``io.audio_frames``)."""
    import av

    from ..io.audio_frames import packed_frame

    as_int16 = _is_int16_grid(torch.from_numpy(wave))
    if as_int16:
        samples = np.clip(np.rint(wave * _INT16_SCALE), -32768, 32767).astype(np.int16)
        in_format = "s16"
    else:
        samples = np.ascontiguousarray(wave, dtype=np.float32)
        in_format = "flt"
    layout = _layout_for(wave.shape[0])
    if quantize:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)
    else:
        # FFmpeg normalises the down-mix matrix only for integer output; keep the s16 path's gains for float.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE, options={"rematrix_maxval": "1.0"})
    time_base = Fraction(1, sample_rate)
    out: list[np.ndarray] = []
    for start in range(0, samples.shape[1], _FRAME_SAMPLES):
        frame = packed_frame(samples[:, start:start + _FRAME_SAMPLES], in_format, layout, sample_rate)
        frame.time_base = time_base
        frame.pts = start
        out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    samples = np.concatenate(out) if out else np.zeros(0, dtype=np.int16 if quantize else np.float32)
    if quantize:
        return samples.astype(np.float32) / np.float32(_INT16_SCALE)
    return samples.astype(np.float32, copy=False)


def to_16k_mono(waveform: Any, sample_rate: int, *, quantize: bool = True) -> torch.Tensor:
    """16 kHz mono float32 ``(T',)`` from a waveform ``(T,)``, ``(C, T)`` or ``(1, C, T)`` in [-1, 1].

    Matches ``ffmpeg -ac 1 -ar 16000 -f s16le`` followed by ``/ 32768`` (upstream's reader): FFmpeg's default
    channel down-mix and resampler, then int16 rounding with clipping. ``quantize=False`` keeps float samples
    (no int16 rounding or clipping) — not upstream's behaviour.
    """
    wave = _as_channels_first(waveform, "waveform")
    sample_rate = _validate(wave, sample_rate, "waveform")
    wave = wave.detach().to(device="cpu", dtype=torch.float32)
    if wave.shape[0] == 1 and sample_rate == TARGET_RATE:
        mono = wave[0]
        if quantize:  # what libswresample's float -> s16 conversion does: round half to even, clip
            mono = (mono * _INT16_SCALE).round().clamp(-32768, 32767) / _INT16_SCALE
        return mono.contiguous()
    out = _swr_to_16k_mono(wave.numpy(), sample_rate, quantize)
    log.debug("resampled %d ch @ %d Hz (%d samples) -> %d samples @ 16 kHz mono", wave.shape[0], sample_rate, wave.shape[1], out.size)
    return torch.from_numpy(out)


def _frame_spec(frame: Any) -> tuple[str, str, int]:
    return frame.format.name, frame.layout.name, frame.sample_rate


def _header_seconds(container: Any, stream: Any) -> float | None:
    """Duration the file's header promises (stream, else container), or None when it does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _check_header(container: Any, stream: Any, path: str) -> None:
    """Refuse audio whose header promises too many channels, too long a clip or too many samples (before decoding)."""
    from ..limits import audio_size_problem

    channels = int(stream.codec_context.channels or 0)
    rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    problem = audio_size_problem(channels, max(rate, 1), _header_seconds(container, stream), path)
    if problem:
        raise ValueError(problem)


def _check_frame(frame: Any, decoded: int, path: str) -> None:
    """Refuse a decoded frame with too many channels (PyAV crashes converting > 8 planes) or past the size limit."""
    from ..limits import audio_size_problem, decoded_audio_problem

    channels = frame.layout.nb_channels
    problem = (audio_size_problem(channels, frame.sample_rate, None, path)
               or decoded_audio_problem(channels, frame.sample_rate, decoded + frame.samples, path))
    if problem:
        raise ValueError(problem)


def _open_audio(path: str) -> tuple[Any, Any]:
    """(container, its best audio stream), the stream's header checked against the limits; ValueError naming the
    file otherwise. The caller closes the container."""
    import av

    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"Could not open {path} as audio/video: {exc}. Is it a media file FFmpeg can read?") from exc
    try:
        stream = container.streams.best("audio")
        if stream is None:
            raise ValueError(f"{path} has no audio track. Give an audio file (wav, mp3, flac, ...) or a video with "
                             "sound.")
        _check_header(container, stream, path)
    except BaseException:
        container.close()
        raise
    return container, stream


def check_audio_file(path: str | os.PathLike) -> None:
    """Open ``path`` and check its audio track's header against the limits, without decoding (ValueError if not)."""
    container, _ = _open_audio(os.fspath(path))
    container.close()


def load_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Decode the (best) audio track of any file FFmpeg reads -> ``(waveform (C, T) float32, sample_rate)``.

    Integer PCM is scaled to [-1, 1) as FFmpeg does (int16 / 32768). If the stream changes format, layout or
    rate midway, later frames are converted to the first frame's layout and rate. The limits of
    ``latentsync.limits`` (channels, duration, decoded size) are checked from the header before decoding and
    again while decoding.
    """
    import av

    from ..io.audio_frames import float_resampler, planar_samples

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    container, stream = _open_audio(path)
    chunks: list[np.ndarray] = []
    with container:
        first: tuple[str, str, int] | None = None
        current: tuple[str, str, int] | None = None
        resampler = None
        decoded = 0
        try:
            for frame in container.decode(stream):
                _check_frame(frame, decoded, path)
                decoded += frame.samples
                spec = _frame_spec(frame)
                if first is None:
                    first = spec
                if spec != current:
                    if resampler is not None:
                        chunks.extend(planar_samples(f) for f in resampler.resample(None))
                    resampler = float_resampler(first[1], first[2])  # packed: see io.audio_frames
                    current = spec
                chunks.extend(planar_samples(f) for f in resampler.resample(frame))
            if resampler is not None:
                chunks.extend(planar_samples(f) for f in resampler.resample(None))
        except av.FFmpegError as exc:
            raise ValueError(f"Could not decode the audio of {path}: {exc}. The file is damaged or truncated.") from exc
    if first is None or not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise ValueError(f"{path}: the audio track contains no samples. Give an audio file with the speech in it.")
    wave = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
    if not bool(torch.isfinite(wave).all()):
        raise ValueError(f"{path}: the audio contains NaN or infinite samples (a damaged float file). Export it again, "
                         "e.g. as 16-bit PCM wav.")
    log.debug("decoded %s: %s @ %d Hz", path, tuple(wave.shape), first[2])
    return wave, first[2]


def load_16k_mono(path: str | os.PathLike, *, quantize: bool = True) -> torch.Tensor:
    """Decode a file straight to upstream's whisper input: 16 kHz mono float32 ``(T,)``."""
    wave, rate = load_audio(path)
    return to_16k_mono(wave, rate, quantize=quantize)
