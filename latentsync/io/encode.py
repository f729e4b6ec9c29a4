"""One-pass H.264 + AAC writer: frames are encoded as they arrive, audio is muxed alongside.

The file is written under a hidden temporary name in the destination folder and renamed when complete,
so an interrupted run never leaves a half-written video under the final name.
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from numbers import Real
from pathlib import Path
from typing import Mapping, Sequence

import av
import numpy as np
import torch
from av.error import FFmpegError

from .audio_frames import float_resampler, packed_frame, planar_samples
from .errors import MediaError
from .partial import PartialFile, remove_stale_partials
from .timing import as_fps, samples_for_frames

log = logging.getLogger(__name__)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
PIX_FMTS = ("yuv420p", "yuv422p", "yuv444p")
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
VFR_TIME_BASE = Fraction(1, 90000)
# Frames are converted with the BT.709 matrix to limited range, and the stream says so (1 = BT709 / MPEG).
_COLOR_TAGS = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}
# If every timestamp sits within this share of a frame interval from i/fps, the timing is treated as CFR.
_CFR_SNAP = 1e-3
_CONVERT_THREADS = 4  # swscale threads for RGB -> YUV (1080x1920 on a 16-core host: 13.7 ms on one, 9.4 on four)
# x264's frame threads when the caller leaves the count to us: each holds its own frames (1080x1920, measured on the
# CPU: about 20 MB a thread over slice threads' whole cost), and x264's own choice, 1.5 per core, held 0.46 GB more
# than slices on a 16-core host for 38 % more speed
_FRAME_THREADS_MAX = 8
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _as_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _layout(channels: int) -> str:
    return _LAYOUTS[channels]


def _prepare_audio(audio) -> tuple[np.ndarray, int]:
    """Validate (waveform, sample_rate) and return float32 (C, T) samples that AAC can take, and the rate."""
    try:
        waveform, sample_rate = audio
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audio must be a (waveform, sample_rate) pair, got {type(audio).__name__}") from exc
    samples = _as_numpy(waveform).astype(np.float32, copy=False)
    if samples.ndim == 3 and samples.shape[0] == 1:  # ComfyUI AUDIO waveform (1, C, T)
        samples = samples[0]
    if samples.ndim == 1:
        samples = samples[None]
    if samples.ndim != 2 or samples.shape[0] not in _LAYOUTS:
        raise ValueError(f"audio waveform must be (channels, samples) with 1-8 channels, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("audio waveform contains NaN or infinite samples")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Real) or sample_rate <= 0:
        raise ValueError(f"audio sample rate must be a positive number, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    supported = sorted(av.codec.Codec("aac", "w").audio_rates or ())
    if supported and sample_rate not in supported:
        target = next((rate for rate in supported if rate >= sample_rate), supported[-1])
        log.info("AAC cannot store %d Hz audio; resampling it to %d Hz", sample_rate, target)
        samples = _resample(samples, sample_rate, target)
        sample_rate = target
    return np.ascontiguousarray(samples), sample_rate


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample float32 (C, T) audio with libswresample (packed frames: see ``audio_frames``)."""
    layout = _layout(samples.shape[0])
    resampler = float_resampler(layout, target)
    frame = packed_frame(samples, "flt", layout, rate)
    pieces = [planar_samples(out) for out in resampler.resample(frame)]
    pieces += [planar_samples(out) for out in resampler.resample(None)]
    return np.concatenate(pieces, axis=1) if pieces else np.zeros((samples.shape[0], 0), np.float32)


def _cfr_timestamps(stamps: np.ndarray, fps: Fraction) -> bool:
    expected = np.arange(len(stamps)) / float(fps)
    return bool(np.max(np.abs((stamps - stamps[0]) - expected)) <= _CFR_SNAP / float(fps))


class VideoWriter:
    """Encode RGB uint8 frames to H.264 (libx264) and mux AAC audio into an mp4/mov/mkv in one pass.

    ``fps`` is kept exactly (pass a Fraction such as 30000/1001; 29.97 snaps to it). ``timestamps``
    (seconds, one per frame, increasing) gives VFR timing; the first frame is placed at 0. ``audio``
    is ``(waveform (C, T) or (1, C, T), sample_rate)``; it is written at its own rate and trimmed or
    padded with silence to the video's duration. Odd sizes with 4:2:0/4:2:2 are padded to even by
    repeating the last column/row. An existing file is never replaced unless ``overwrite=True``.
    ``metadata`` (str -> str) goes into the container's tags (kept as custom tags in mp4/mov).
    ``frame_threads``: x264 spreads whole frames over its threads (``threads``, or 1.5 per core up to 8), as the
    ffmpeg command does; False: slices of each frame (PyAV's default), which holds fewer frames in memory but encodes
    fewer per second on many cores.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: Fraction | float,
        *,
        audio: tuple | None = None,
        crf: float = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        timestamps: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        overwrite: bool = False,
        threads: int = 0,
        audio_bitrate: int = 192_000,
        metadata: Mapping[str, str] | None = None,
        frame_threads: bool = True,
    ):
        self.path = Path(path)
        self.fps = as_fps(fps)
        self._format = CONTAINERS.get(self.path.suffix.lower())
        if self._format is None:
            raise MediaError(f"{self.path}: unsupported output extension; use one of {', '.join(CONTAINERS)}.")
        if not self.path.parent.is_dir():
            raise MediaError(f"{self.path}: the folder {self.path.parent} does not exist; create it first.")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} already exists; choose another name or pass overwrite=True.")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51 (lower = better, 18 is visually lossless), got {crf}")
        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, got {preset!r}")
        if pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt must be one of {', '.join(PIX_FMTS)}, got {pix_fmt!r}")
        self._crf, self._preset, self._pix_fmt = crf, preset, pix_fmt
        self._overwrite, self._threads, self._audio_bitrate = overwrite, threads, audio_bitrate
        self._thread_type = "FRAME" if frame_threads else "SLICE"
        threaded = int(av.__version__.split(".")[0]) >= 17  # PyAV 17 added threaded reformatting
        convert = max(1, min(_CONVERT_THREADS, threads or os.cpu_count() or 1))
        self._convert_threads = {"threads": convert} if threaded else {}
        self._metadata = {str(key): str(value) for key, value in (metadata or {}).items()}
        self._ticks = self._timestamp_ticks(timestamps)
        self._time_base = Fraction(1) / self.fps if self._ticks is None else VFR_TIME_BASE
        self._audio, self._sample_rate = _prepare_audio(audio) if audio is not None else (None, None)

        self._container = None
        self._video = None
        self._audio_stream = None
        self._audio_done = 0  # samples handed to the AAC encoder so far
        self._size: tuple[int, int] | None = None  # (H, W) of incoming frames
        self._pad = (0, 0)
        self._frames = 0
        self._temp: Path | None = None
        self._partial: PartialFile | None = None
        self._held = None  # latest video packet, muxed once the next one arrives (see _mux_video)
        self._first_dts: int | None = None
        self._closed = False

    def _timestamp_ticks(self, timestamps) -> np.ndarray | None:
        """Per-frame pts in VFR_TIME_BASE ticks from 0, or None when the timing is plain CFR at fps."""
        if timestamps is None:
            return None
        stamps = _as_numpy(timestamps).astype(np.float64).reshape(-1)
        if stamps.size == 0 or not np.isfinite(stamps).all():
            raise ValueError("timestamps must be a non-empty sequence of finite seconds, one per frame")
        if _cfr_timestamps(stamps, self.fps):
            return None
        ticks = np.round((stamps - stamps[0]) / float(VFR_TIME_BASE)).astype(np.int64)
        if np.any(np.diff(ticks) <= 0):
            bad = int(np.argmax(np.diff(ticks) <= 0)) + 1
            raise ValueError(f"timestamps must increase strictly; frame {bad} is at {stamps[bad]:.6f} s, "
                             f"not after frame {bad - 1} at {stamps[bad - 1]:.6f} s")
        return ticks

    # ----------------------------------------------------------------------------------- properties
    @property
    def frames_written(self) -> int:
        return self._frames

    @property
    def sample_rate(self) -> int | None:
        """Rate the audio is stored at (its own, unless AAC needed a resample)."""
        return self._sample_rate

    def _end_ticks(self, frames: int) -> int:
        """End of the display time of the first ``frames`` frames, in video time-base ticks."""
        if self._ticks is None or frames == 0:
            return frames
        last = int(self._ticks[frames - 1])
        return last + self._frame_duration(last)

    def _audio_target(self, frames: int) -> int:
        """Audio samples that cover the first ``frames`` frames."""
        if self._ticks is None:
            return samples_for_frames(frames, self.fps, self._sample_rate)
        return math.floor(self._end_ticks(frames) * VFR_TIME_BASE * self._sample_rate)

    # ----------------------------------------------------------------------------------- opening
    def _open(self, height: int, width: int) -> None:
        self._size = (height, width)
        subsampled_rows = self._pix_fmt == "yuv420p"
        subsampled_cols = self._pix_fmt in ("yuv420p", "yuv422p")
        self._pad = (height % 2 if subsampled_rows else 0, width % 2 if subsampled_cols else 0)
        if any(self._pad):
            log.info("%s: %dx%d is odd for %s; padding to %dx%d by repeating the last column/row",
                     self.path.name, width, height, self._pix_fmt, width + self._pad[1], height + self._pad[0])
        remove_stale_partials(self.path)  # left-overs of a run of this output that died (lock free)
        options = {"movflags": "+faststart+use_metadata_tags"} if self._format in ("mp4", "mov") else {}
        try:
            self._partial = PartialFile(self.path)  # locked while this writer lives
            self._temp = self._partial.path
            self._container = av.open(str(self._temp), mode="w", format=self._format, options=options)
        except (FFmpegError, OSError) as exc:
            if self._partial is not None:
                self._partial.discard()
            raise MediaError(f"cannot create a file next to {self.path}: {exc}. Check that the folder is "
                             "writable.") from exc
        self._container.metadata.update(self._metadata)

        video = self._container.add_stream("libx264", rate=self.fps)
        video.width, video.height = width + self._pad[1], height + self._pad[0]
        video.pix_fmt = self._pix_fmt
        video.time_base = self._time_base
        video.codec_context.time_base = self._time_base
        video.codec_context.thread_count = self._threads or self._auto_threads()
        video.codec_context.thread_type = self._thread_type
        for tag, value in _COLOR_TAGS.items():  # older PyAV lacks some of these setters: tag what it can
            if hasattr(video.codec_context, tag):
                setattr(video.codec_context, tag, value)
        video.options = {"crf": str(self._crf), "preset": self._preset}
        self._video = video

        if self._audio is not None:
            stream = self._container.add_stream("aac", rate=self._sample_rate, layout=_layout(self._audio.shape[0]))
            stream.bit_rate = self._audio_bitrate
            stream.time_base = Fraction(1, self._sample_rate)
            self._audio_stream = stream

    def _auto_threads(self) -> int:
        """x264's thread count when none was given: its own (0: 1.5 per core) for slices, at most
        ``_FRAME_THREADS_MAX`` for frame threads."""
        if self._thread_type != "FRAME":
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(_FRAME_THREADS_MAX, cores * 3 // 2))

    # ----------------------------------------------------------------------------------- writing
    def write(self, frames) -> None:
        """Encode a batch of RGB frames, uint8 (b, H, W, 3) or (H, W, 3), numpy or torch (any device)."""
        if self._closed:
            raise MediaError(f"{self.path}: write() after close()")
        batch = _as_numpy(frames)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"frames must be (b, H, W, 3) RGB, got shape {tuple(batch.shape)}")
        if batch.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 0..255, got {batch.dtype}; convert a 0..1 float IMAGE "
                             "with (x * 255).round().clamp(0, 255).to(torch.uint8)")
        self._check_batch(len(batch), tuple(batch.shape[1:3]))
        if any(self._pad):
            batch = np.pad(batch, ((0, 0), (0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        self._encode_batch(self._rgb_frame(np.ascontiguousarray(rgb)) for rgb in batch)

    def write_yuv420(self, planes) -> None:
        """Encode frames already in the stream's format: uint8 ``(b, H * 3 // 2, W)`` yuv420p arrays, BT.709 limited
        range (:func:`latentsync.io.yuv.rgb_to_yuv420`), numpy or torch. Needs a yuv420p writer and an even size."""
        if self._closed:
            raise MediaError(f"{self.path}: write_yuv420() after close()")
        if self._pix_fmt != "yuv420p":
            raise ValueError(f"write_yuv420 needs a yuv420p writer, this one writes {self._pix_fmt}; use write()")
        batch = _as_numpy(planes)
        if batch.ndim == 2:
            batch = batch[None]
        if batch.ndim != 3 or batch.dtype != np.uint8 or batch.shape[1] % 3 or batch.shape[2] % 2:
            raise ValueError(f"planes must be uint8 (b, H * 3 // 2, W) with H and W even, got {batch.dtype} "
                             f"{tuple(batch.shape)}")
        size = (batch.shape[1] * 2 // 3, batch.shape[2])
        if size[0] % 2:
            raise ValueError(f"planes of {batch.shape[1]} rows do not hold an even frame height")
        self._check_batch(len(batch), size)
        self._encode_batch(av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format="yuv420p") for plane in batch)

    def _encode_batch(self, frames) -> None:
        """Encode the frames (an iterable, converted one at a time), then the audio that covers them."""
        try:
            for frame in frames:
                self._encode_frame(frame)
            if self._audio_stream is not None:
                self._encode_audio(self._audio_target(self._frames), final=False)
        except FFmpegError as exc:
            raise MediaError(f"{self.path}: encoding failed ({exc})") from exc

    def _check_batch(self, count: int, size: tuple[int, int]) -> None:
        """Timestamps left for ``count`` frames; the stream opened at the first batch's ``size``, kept after."""
        if self._ticks is not None and self._frames + count > len(self._ticks):
            raise ValueError(f"{len(self._ticks)} timestamps were given but frame {len(self._ticks)} is being written")
        if self._container is None:
            self._open(*size)
        elif size != self._size:
            raise ValueError(f"frame size changed from {self._size[1]}x{self._size[0]} to "
                             f"{size[1]}x{size[0]}; all frames of a video must have one size")

    def _rgb_frame(self, rgb: np.ndarray) -> "av.VideoFrame":
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        # limited range, as tagged; swscale's slice threads give the same pixels and keep up with x264's threads
        return frame.reformat(format=self._pix_fmt, dst_colorspace="ITU709", **self._convert_threads)

    def _encode_frame(self, frame: "av.VideoFrame") -> None:
        frame.pts = self._frames if self._ticks is None else int(self._ticks[self._frames])
        frame.time_base = self._time_base
        self._mux_video(self._video.encode(frame))
        self._frames += 1

    def _frame_duration(self, pts: int) -> int:
        """Display duration of the frame at ``pts`` in ticks: until the next frame; the last lasts 1/fps."""
        if self._ticks is None:
            return 1
        index = int(np.searchsorted(self._ticks, pts))
        if index + 1 < len(self._ticks):
            return int(self._ticks[index + 1]) - pts
        return round(1 / (self.fps * VFR_TIME_BASE))

    def _mux_video(self, packets, *, final: bool = False) -> None:
        """Mux video packets, one behind, with durations set (libx264 leaves them at 0).

        Each packet lasts until the next frame in display order. mp4 also derives the track length from
        decode timestamps (last dts + its duration - first dts), so the last packet in decode order is
        held back and stretched until that length reaches the last frame's end too.
        """
        for packet in packets:
            if packet.pts is not None and not packet.duration:
                packet.duration = self._frame_duration(packet.pts)
            if self._first_dts is None and packet.dts is not None:
                self._first_dts = packet.dts
            if self._held is not None:
                self._container.mux(self._held)
            self._held = packet
        if final and self._held is not None:
            if self._held.dts is not None and self._first_dts is not None:
                end = self._end_ticks(self._frames)
                self._held.duration = max(self._held.duration, end - self._held.dts + self._first_dts)
            self._container.mux(self._held)
            self._held = None

    def _encode_audio(self, target: int, *, final: bool) -> None:
        """Feed the AAC encoder up to sample ``target`` (whole encoder frames unless ``final``)."""
        frame_size = self._audio_stream.codec_context.frame_size or 1024
        end = target if final else self._audio_done + (target - self._audio_done) // frame_size * frame_size
        channels = self._audio.shape[0]
        layout = self._audio_stream.layout
        while self._audio_done < end:
            size = min(frame_size, end - self._audio_done)
            chunk = np.zeros((channels, size), dtype=np.float32)
            have = self._audio[:, self._audio_done:self._audio_done + size]
            chunk[:, :have.shape[1]] = have  # past the end of the waveform: silence
            frame = packed_frame(chunk, "flt", layout, self._sample_rate)  # the encoder converts it to planar
            frame.pts = self._audio_done
            frame.time_base = Fraction(1, self._sample_rate)
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_done += size

    # ----------------------------------------------------------------------------------- finishing
    def close(self) -> Path:
        """Flush the encoders, finish the file and move it to its final name; returns that path."""
        if self._closed:
            return self.path
        if self._container is None:
            self._closed = True
            raise MediaError(f"{self.path}: no frames were written; nothing to save.")
        if self._ticks is not None and self._frames != len(self._ticks):
            self.abort()
            raise ValueError(f"{len(self._ticks)} timestamps were given but {self._frames} frames were written")
        try:
            self._mux_video(self._video.encode(None), final=True)
            if self._audio_stream is not None:
                self._encode_audio(self._audio_target(self._frames), final=True)
                for packet in self._audio_stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            self._container = None
            self._publish()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        log.info("wrote %s: %d frames at %s fps%s", self.path, self._frames, self.fps,
                 "" if self._audio is None else f", audio {self._sample_rate} Hz")
        return self.path

    def _publish(self) -> None:
        """Rename the finished temporary file to the final name without replacing a file (unless asked)."""
        if self._overwrite:
            os.replace(self._temp, self.path)
        else:
            try:
                os.link(self._temp, self.path)  # atomic: fails if the name was taken meanwhile
            except FileExistsError:
                raise FileExistsError(f"{self.path} appeared while writing; not replacing it. Pass "
                                      "overwrite=True or choose another name.") from None
            except OSError:  # file system without hard links
                if self.path.exists():
                    raise FileExistsError(f"{self.path} appeared while writing; not replacing it.") from None
                os.replace(self._temp, self.path)
            else:
                os.unlink(self._temp)
        self._partial.release()

    def abort(self) -> None:
        """Stop writing and delete the temporary file; the final name is left untouched."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except (FFmpegError, OSError):
                pass
            self._container = None
        if self._partial is not None:
            self._partial.discard()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
