"""Audio path vs upstream golden data: log-mel, whisper features (short clip and one crossing 30 s), chunk tables.

Everything (dims, clip recipes, chunk counts, selected chunks, tolerances) is read from manifest.json.
"""

from __future__ import annotations

import hashlib
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentsync.audio.features import whisper_features
from latentsync.audio.mel import log_mel_spectrogram
from latentsync.audio.waveform import load_16k_mono
from latentsync.audio.windows import frame_window_indices, frame_windows, upstream_frame_count
from latentsync.models.whisper import load_whisper_encoder

FEATURES_FILE = "audio_features.safetensors"


@pytest.fixture(scope="module")
def entry(manifest: dict) -> dict:
    return manifest["files"][FEATURES_FILE]


@pytest.fixture(scope="module")
def golden(fixtures_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(fixtures_dir / FEATURES_FILE))


@pytest.fixture(scope="module")
def atol(check: dict) -> float:
    return float(check["audio_features"]["atol"])


@pytest.fixture(scope="module")
def call_args(entry: dict) -> tuple[float, tuple[int, int]]:
    """fps and audio_feat_length of the upstream call that produced the golden chunks."""
    call = entry["upstream_call"]
    fps = re.search(r"fps\s*=\s*([0-9.]+)", call)
    feat = re.search(r"audio_feat_length\s*=\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]", call)
    assert fps and feat, f"cannot read fps / audio_feat_length from upstream_call: {call!r}"
    return float(fps.group(1)), (int(feat.group(1)), int(feat.group(2)))


@pytest.fixture(scope="module")
def encoder(fixtures_dir: Path, entry: dict):
    ckpt = entry["stats"]["checkpoint"]
    enc = load_whisper_encoder(fixtures_dir / ckpt["file"])
    assert enc.dims.as_dict() == entry["generation_params"]["dims"]
    return enc


def _read_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 16000), path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def _build_wav(spec: str, media: Path, out: Path) -> Path:
    """Concatenate int16 slices 'name.wav[a:b],...' of the demo wavs into a 16 kHz mono wav file."""
    pieces = []
    for item in spec.split(","):
        match = re.fullmatch(r"\s*([^\[\]]+)\[(\d*):(\d*)\]\s*", item)
        assert match, f"bad clip spec {item!r}"
        pcm = _read_pcm16(media / match.group(1))
        start = int(match.group(2) or 0)
        stop = int(match.group(3)) if match.group(3) else len(pcm)
        pieces.append(pcm[start:stop])
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(pieces).tobytes())
    return out


@pytest.fixture(scope="module")
def short_wav(fixtures_dir: Path, entry: dict) -> torch.Tensor:
    wav = load_16k_mono(fixtures_dir / entry["stats"]["short"]["wav"])
    assert wav.numel() == entry["stats"]["short"]["num_samples"]
    return wav


@pytest.fixture(scope="module")
def long_wav(entry: dict, media: Path, tmp_path_factory) -> torch.Tensor:
    path = _build_wav(entry["generation_params"]["long_spec"], media, tmp_path_factory.mktemp("audio") / "long.wav")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["stats"]["long_wav_sha256"], "long clip recipe mismatch"
    wav = load_16k_mono(path)
    assert wav.numel() == entry["stats"]["long"]["num_samples"]
    return wav


@pytest.fixture(scope="module")
def short_features(encoder, short_wav) -> torch.Tensor:
    return whisper_features(encoder, short_wav)


@pytest.fixture(scope="module")
def long_features(encoder, long_wav) -> torch.Tensor:
    return whisper_features(encoder, long_wav)


def test_short_log_mel(short_wav, golden, atol):
    mel = log_mel_spectrogram(short_wav)
    ref = golden["short_log_mel"]
    assert mel.shape == ref.shape
    torch.testing.assert_close(mel, ref, atol=atol, rtol=0)


@pytest.mark.parametrize("clip", ["short", "long"])
def test_features(clip, request, golden, atol, entry):
    features = request.getfixturevalue(f"{clip}_features")
    ref = golden[f"{clip}_features"]
    assert features.dtype == torch.float32 and features.device.type == "cpu"
    assert list(features.shape) == entry["stats"][clip]["feature_shape"] == list(ref.shape)
    torch.testing.assert_close(features, ref, atol=atol, rtol=0)


@pytest.mark.parametrize("clip", ["short", "long"])
def test_chunk_index_tables_exact(clip, golden, entry, call_args):
    fps, feat_length = call_args
    ref = golden[f"{clip}_chunk_indices"].long()
    rows = entry["stats"][clip]["feature_shape"][0]
    count = upstream_frame_count(rows, fps)
    assert count == entry["stats"][clip]["num_chunks"] == entry["generation_params"][f"{clip}_num_chunks"]
    indices = frame_window_indices(rows, count, fps, feat_length=feat_length)
    assert torch.equal(indices, ref)


def test_short_chunks(short_features, golden, atol, entry, call_args):
    fps, feat_length = call_args
    count = upstream_frame_count(short_features.shape[0], fps)
    chunks = frame_windows(short_features, frame_window_indices(short_features.shape[0], count, fps, feat_length=feat_length))
    ref = golden["short_chunks"]
    assert chunks.shape == ref.shape
    torch.testing.assert_close(chunks, ref, atol=atol, rtol=0)


def test_long_chunks_selected(long_features, golden, atol, entry, call_args):
    fps, feat_length = call_args
    selected = entry["stats"]["long"]["long_chunks_selected_index"]
    rows = long_features.shape[0]
    count = upstream_frame_count(rows, fps)
    indices = frame_window_indices(rows, count, fps, feat_length=feat_length)[selected]
    chunks = frame_windows(long_features, indices)
    ref = golden["long_chunks_selected"]
    assert chunks.shape == ref.shape
    torch.testing.assert_close(chunks, ref, atol=atol, rtol=0)
    # The same frames asked for as a streaming slice give the same windows.
    tail = frame_window_indices(rows, count - selected[-3], fps, feat_length=feat_length, start_frame=selected[-3])
    torch.testing.assert_close(frame_windows(long_features, tail)[-3:], ref[-3:], atol=atol, rtol=0)


def test_window_batching_does_not_change_features(encoder, long_wav, long_features):
    one_at_a_time = whisper_features(encoder, long_wav, batch_windows=1)
    assert torch.equal(one_at_a_time, long_features)


def test_long_clip_crosses_a_window(entry, long_features):
    segments = entry["stats"]["long"]["segments"]
    assert len(segments) > 1
    assert long_features.shape[0] == sum(s["kept_rows"] for s in segments)
