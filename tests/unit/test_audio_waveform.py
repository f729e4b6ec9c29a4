"""Decoding and 16 kHz mono conversion: formats, rates, channel counts, ComfyUI AUDIO mappings, bad input."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from latentsync.audio.waveform import audio_from_mapping, load_16k_mono, load_audio, to_16k_mono

FREQ = 440.0
AMP = 0.5


def _sine(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    tone = AMP * np.sin(2 * np.pi * FREQ * t + 0.3)
    return np.repeat(tone[None], channels, axis=0).astype(np.float32)


def _dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def _ffmpeg_reference(path: Path) -> np.ndarray:
    """What `ffmpeg -i path -ac 1 -ar 16000 -f s16le` gives: the file's own frames through libswresample."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.best("audio")):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) / 32768


def _write(path: Path, codec: str, rate: int, samples: np.ndarray) -> Path:
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        size = stream.codec_context.frame_size or 1024
        fmt = stream.codec_context.format.name
        for start in range(0, samples.shape[1], size):
            block = samples[:, start:start + size]
            scale, dtype = {"s16": (32767, np.int16), "s32": (2**31 - 1, np.int32), "flt": (1, np.float32)}[fmt.rstrip("p")]
            data = (np.round(block * scale) if scale > 1 else block).astype(dtype)
            data = np.ascontiguousarray(data if fmt.endswith("p") else data.T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 1), (22050, 2), (8000, 2), (16000, 2)])
def test_tensor_to_16k_mono(rate, channels):
    wave = _sine(rate, 2.0, channels)
    out = to_16k_mono(torch.from_numpy(wave), rate)
    assert out.dtype == torch.float32 and out.ndim == 1 and out.numel() == 32000
    x = out.numpy()
    assert abs(_dominant_frequency(x, 16000) - FREQ) < 1.0
    interior = x[800:-800]
    assert abs(np.abs(interior).max() - AMP) < 0.01
    n = np.arange(32000)
    ideal = AMP * np.sin(2 * np.pi * FREQ * n / 16000 + 0.3)  # the same tone sampled at 16 kHz: no delay, no gain
    assert np.abs(interior - ideal[800:-800]).max() < 2e-3
    assert np.array_equal(np.round(x * 32768), x * 32768)  # int16 grid, as upstream


@pytest.mark.parametrize("name,codec,rate", [("tone.mp3", "libmp3lame", 44100), ("tone.m4a", "aac", 48000)])
def test_compressed_files_match_ffmpeg(tmp_path, name, codec, rate):
    path = _write(tmp_path / name, codec, rate, _sine(rate, 1.5, 2))
    wave, file_rate = load_audio(path)
    assert file_rate == rate and wave.shape[0] == 2 and wave.dtype == torch.float32
    out = load_16k_mono(path)
    assert np.array_equal(out.numpy(), _ffmpeg_reference(path))
    assert abs(out.numel() - 24000) < 1200  # encoder padding/priming only
    assert abs(_dominant_frequency(out.numpy(), 16000) - FREQ) < 1.0
    assert abs(np.abs(out.numpy()[4000:-4000]).max() - AMP) < 0.05  # lossy codec


def test_pcm_wav_matches_ffmpeg(tmp_path):
    path = _write(tmp_path / "tone.wav", "pcm_s16le", 44100, _sine(44100, 1.0, 2))
    assert np.array_equal(load_16k_mono(path).numpy(), _ffmpeg_reference(path))


def test_16k_mono_float_input_is_rounded_like_ffmpeg():
    gen = torch.Generator().manual_seed(0)
    wave = torch.rand(1, 5000, generator=gen) * 2.4 - 1.2  # includes values to clip
    out = to_16k_mono(wave, 16000)
    frame = av.AudioFrame.from_ndarray(wave.numpy(), format="fltp", layout="mono")
    frame.sample_rate = 16000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    ref = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame) + resampler.resample(None)])
    assert np.array_equal(out.numpy(), ref.astype(np.float32) / 32768)
    unquantized = to_16k_mono(wave, 16000, quantize=False)
    assert torch.equal(unquantized, wave[0])


def test_no_quantization_option():
    wave = torch.from_numpy(_sine(44100, 1.0, 2))
    exact = to_16k_mono(wave, 44100, quantize=False)
    rounded = to_16k_mono(wave, 44100)
    diff = (exact - rounded).abs()
    assert 0 < float(diff.max()) <= 0.5 / 32768 + 1e-7


def test_video_container_audio_track(media):
    wave, rate = load_audio(media / "demo1_video.mp4")
    assert rate == 44100 and wave.shape[0] == 2
    assert abs(wave.shape[1] / rate - 10.0) < 0.05
    mono = load_16k_mono(media / "demo1_video.mp4")
    assert abs(mono.numel() / 16000 - 10.0) < 0.05


class _LazyAudio(Mapping):
    """Like VideoHelperSuite's lazy AUDIO: a read-only Mapping that counts what is read."""

    def __init__(self, waveform: torch.Tensor, rate: int) -> None:
        self._data = {"waveform": waveform, "sample_rate": rate}
        self.reads: list[str] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return 2


def test_comfy_audio_mapping():
    batch = torch.from_numpy(np.stack([_sine(48000, 0.5, 2), _sine(48000, 0.5, 2) * 0.5]))
    before = batch.clone()
    lazy = _LazyAudio(batch, 48000)
    wave, rate = audio_from_mapping(lazy)
    assert rate == 48000 and wave.shape == (2, 24000) and sorted(lazy.reads) == ["sample_rate", "waveform"]
    second, _ = audio_from_mapping({"waveform": batch, "sample_rate": 48000}, index=1)
    assert torch.equal(second, batch[1])
    assert torch.equal(batch, before)
    assert to_16k_mono(batch[:1], 48000).numel() == 8000  # (1, C, T) is accepted directly
    with pytest.raises(ValueError, match="batch of 2"):
        to_16k_mono(batch, 48000)
    with pytest.raises(ValueError, match="out of range"):
        audio_from_mapping({"waveform": batch, "sample_rate": 48000}, index=2)


@pytest.mark.parametrize(
    "waveform,rate,message",
    [
        (torch.zeros(1, 2, 0), 44100, "empty"),
        (torch.tensor([[0.1, float("nan"), 0.2]]), 44100, "NaN"),
        (torch.zeros(1, 1, 100), 0, "sample_rate"),
        (torch.zeros(1, 1, 100), -16000, "sample_rate"),
        (torch.zeros(1, 1, 100), 22050.5, "sample_rate"),
        (torch.zeros(1, 1, 100, dtype=torch.int16), 16000, "floating point"),
    ],
)
def test_bad_audio_is_rejected(waveform, rate, message):
    with pytest.raises(ValueError, match=message):
        to_16k_mono(*audio_from_mapping({"waveform": waveform, "sample_rate": rate}))
    with pytest.raises(ValueError, match=message):
        to_16k_mono(waveform, rate)


def test_bad_files_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 64)
    with pytest.raises(ValueError, match="junk.mp3"):
        load_audio(junk)
    with pytest.raises(ValueError, match="missing 'waveform'|no 'waveform'"):
        audio_from_mapping({"sample_rate": 16000})
