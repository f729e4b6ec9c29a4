"""Media helpers of the data steps: video packets copied with new audio (upstream's ``-c:v copy``), audio
resampling that keeps the channels (upstream's ``-ar 16000``), and the encoder settings of each step."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..io.audio_frames import float_resampler, packed_frame, planar_samples
from .files import AtomicFile

FPS = 25
SAMPLE_RATE = 16000
AUDIO_BITRATE = 128_000
# libx264 settings: upstream's ffmpeg -r 25 re-encode has ffmpeg's defaults (crf 23, medium); scenedetect's
# split-video re-encodes shots with crf 22 veryfast; aligned faces are written with crf 13 (util.write_video).
RESAMPLE_X264 = {"crf": 23, "preset": "medium"}
SEGMENT_X264 = {"crf": 22, "preset": "veryfast"}
FACES_X264 = {"crf": 13, "preset": "medium"}


def resample_audio(wave: torch.Tensor, rate: int, target: int = SAMPLE_RATE) -> torch.Tensor:
    """(C, T) float32 at ``rate`` -> (C, T') at ``target`` with libswresample (as ffmpeg's ``-ar``), channels kept."""
    if rate == target:
        return wave.clone()
    layout = {1: "mono", 2: "stereo"}.get(int(wave.shape[0]))
    if layout is None:  # more than two channels: downmixed (the later steps use mono anyway)
        wave, layout = wave.mean(0, keepdim=True), "mono"
    samples = np.ascontiguousarray(wave.numpy().astype(np.float32))
    resampler = float_resampler(layout, target)
    pieces = [planar_samples(f) for f in resampler.resample(packed_frame(samples, "flt", layout, rate))]
    pieces += [planar_samples(f) for f in resampler.resample(None)]
    out = np.concatenate(pieces, axis=1) if pieces else np.zeros((samples.shape[0], 0), np.float32)
    return torch.from_numpy(np.ascontiguousarray(out))


def audio_slice(wave: torch.Tensor, rate: int, start_frame: int, stop_frame: int, fps: int = FPS) -> torch.Tensor:
    """The samples of frames ``[start_frame, stop_frame)`` at ``fps``, padded with silence past the end."""
    a = int(round(Fraction(start_frame * rate, fps)))
    b = int(round(Fraction(stop_frame * rate, fps)))
    piece = wave[:, a:b]
    if piece.shape[1] < b - a:
        piece = torch.cat([piece, piece.new_zeros(piece.shape[0], b - a - piece.shape[1])], dim=1)
    return piece


def _encode_audio(container, wave: torch.Tensor, rate: int) -> None:
    """Add an AAC stream with ``wave`` (C, T) to an open output container and encode all of it."""
    layout = {1: "mono", 2: "stereo"}[int(wave.shape[0])]
    stream = container.add_stream("aac", rate=rate, layout=layout)
    stream.bit_rate = AUDIO_BITRATE
    frame_size = 1024
    samples = np.ascontiguousarray(wave.numpy().astype(np.float32))
    for start in range(0, samples.shape[1], frame_size):
        chunk = samples[:, start:start + frame_size]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.T.reshape(1, -1)), format="flt", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def remux_with_audio(video: Path, dst: Path, wave: torch.Tensor, rate: int) -> Path:
    """``dst``: the video stream of ``video`` copied packet for packet, with ``wave`` (C, T) at ``rate`` as AAC."""
    if wave.shape[0] > 2:
        wave = wave.mean(0, keepdim=True)
    with AtomicFile(dst) as tmp:
        with av.open(os.fspath(video)) as src, av.open(os.fspath(tmp.path), "w", format="mp4") as out:
            vin = src.streams.video[0]
            vout = out.add_stream_from_template(vin)
            _encode_audio(out, wave, rate)  # audio first in memory, interleaved by the muxer
            for packet in src.demux(vin):
                if packet.dts is None:
                    continue
                packet.stream = vout
                out.mux(packet)
    return dst
