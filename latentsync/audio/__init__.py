"""Audio path: decode/resample to 16 kHz mono, whisper log-mel and encoder features, per-frame windows, pauses."""

from .features import whisper_features
from .mel import log_mel_spectrogram, mel_filterbank
from .silence import silent_frames
from .waveform import audio_from_mapping, load_16k_mono, load_audio, to_16k_mono
from .windows import (
    frame_window_indices,
    frame_window_indices_at,
    frame_windows,
    upstream_frame_count,
    window_size,
)

__all__ = [
    "audio_from_mapping",
    "frame_window_indices",
    "frame_window_indices_at",
    "frame_windows",
    "load_16k_mono",
    "load_audio",
    "log_mel_spectrogram",
    "mel_filterbank",
    "silent_frames",
    "to_16k_mono",
    "upstream_frame_count",
    "whisper_features",
    "window_size",
]
