"""Mel and windowed whisper features: edge lengths, window bookkeeping, whole-clip normalisation."""

from __future__ import annotations

import pytest
import torch

from latentsync.audio.features import whisper_features, window_row_counts
from latentsync.audio.mel import log_mel_spectrogram, mel_filterbank
from latentsync.models.whisper import WhisperDims, WhisperEncoder

DIMS = WhisperDims(n_mels=80, n_audio_ctx=1500, n_audio_state=8, n_audio_head=2, n_audio_layer=1,
                   n_vocab=4, n_text_ctx=2, n_text_state=8, n_text_head=2, n_text_layer=1)


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return WhisperEncoder(DIMS).eval()


def _noise(samples: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(samples, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_filterbank_shape_and_order():
    bank = mel_filterbank(80)
    assert bank.shape == (80, 201) and bank.dtype == torch.float32 and bool((bank >= 0).all())
    peaks = bank.argmax(dim=1)
    assert bool((peaks.diff() >= 0).all()) and int(peaks[-1]) > 190


def test_log_mel_frames_and_whole_clip_floor():
    quiet = _noise(16000) * 1e-5  # 100 dB below the loud part
    assert log_mel_spectrogram(quiet).shape == (80, 100)
    loud = torch.cat([quiet, _noise(16000, 1)])
    mel = log_mel_spectrogram(loud)
    # The floor (max - 8 in log10 units, i.e. -1 after scaling) comes from the loud half and flattens the quiet one.
    assert torch.isclose(mel.max() - mel.min(), torch.tensor(2.0)) and bool((mel[:, 5:95] == mel.min()).all())
    with pytest.raises(ValueError, match="too short"):
        log_mel_spectrogram(torch.zeros(200))


def test_window_row_counts():
    assert window_row_counts(300, 3000) == [150]
    assert window_row_counts(3000, 3000) == [1500]
    assert window_row_counts(3001, 3000) == [1500, 0]
    assert window_row_counts(6145, 3000) == [1500, 1500, 72]


def test_feature_rows_and_empty_last_window(encoder):
    assert whisper_features(encoder, _noise(320)).shape == (1, 2, 8)
    # 3001 mel frames: the second window has one real frame and yields no row (upstream keeps int(1 / 2) = 0).
    features = whisper_features(encoder, _noise(3001 * 160))
    assert features.shape == (1500, 2, 8) and features.dtype == torch.float32
    with pytest.raises(ValueError, match="too short"):
        whisper_features(encoder, _noise(319))
    with pytest.raises(ValueError, match="NaN"):
        whisper_features(encoder, torch.full((1000,), float("nan")))
    with pytest.raises(ValueError, match="1-D"):
        whisper_features(encoder, _noise(1000)[None])


def test_reduced_precision_request(encoder):
    wav = _noise(16000)
    ref = whisper_features(encoder, wav)
    low = whisper_features(encoder, wav, dtype=torch.bfloat16, batch_windows=2)
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert float((low - ref).abs().max()) < 0.05 * float(ref.abs().max())
