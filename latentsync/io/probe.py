"""Video metadata without decoding the whole file: size after rotation, frame count, exact fps, VFR, audio.

The frame count and the VFR flag come from the container's per-frame index when it has one (mp4/mov),
else from a demux-only scan of the packets (no decoding), else (``exact=False``) from the header.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.error import FFmpegError

from ..configs import UPSTREAM_FPS
from ..limits import frame_size_problem
from .errors import MediaError

log = logging.getLogger(__name__)

# A frame interval that deviates from 1/fps by more than this share of it (and by more than 1.5
# container ticks, which absorbs millisecond-rounded timestamps) marks the file as VFR.
_VFR_RELATIVE_TOLERANCE = 0.01
_FALLBACK_FPS = Fraction(UPSTREAM_FPS)


@dataclass(frozen=True)
class VideoInfo:
    """What a caller needs to plan work on a video before decoding it."""

    path: Path
    width: int
    """Width of the frames as delivered (after rotation)."""
    height: int
    num_frames: int
    num_frames_exact: bool
    """True when ``num_frames`` and ``is_vfr`` come from every frame's timestamp, False when estimated."""
    fps: Fraction
    """Average frame rate (the container's ``avg_frame_rate``)."""
    is_vfr: bool
    duration: float
    """Seconds of video (stream duration, else container duration, else frames / fps)."""
    rotation: int
    """Clockwise degrees (0, 90, 180, 270) the decoder turns stored frames to display them upright."""
    codec: str
    pix_fmt: str
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None


def open_input(path: str | os.PathLike) -> tuple[av.container.InputContainer, Path]:
    """Open a media file for reading, turning every failure into a MediaError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"Video file not found: {path}")
    try:
        return av.open(str(path), mode="r"), path
    except (FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaError(
            f"{path} is not a readable video or image ({exc}). Check that the file is complete and is a "
            "video (mp4, mov, mkv, webm, ...) or an image."
        ) from exc


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream, or a MediaError saying what the file holds instead."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise MediaError(
            f"{path} has no video stream (it holds {', '.join(kinds)}). Give a video or image file; "
            "audio goes to the audio input."
        )
    return container.streams.video[0]


def stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    """Average frame rate of a stream as a Fraction, falling back to the guessed rate, then 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    log.warning("video stream has no frame rate; assuming %s fps", _FALLBACK_FPS)
    return _FALLBACK_FPS


def _matrix_rotation_ccw(matrix: bytes) -> float:
    """Counter-clockwise rotation in degrees encoded by a 3x3 display matrix (9 native int32, 16.16)."""
    a, b, _, c, d, _, _, _, _ = struct.unpack("=9i", matrix[:36])
    scale_x = math.hypot(a, c) or 1.0
    scale_y = math.hypot(b, d) or 1.0
    return -math.degrees(math.atan2(b / scale_y, a / scale_x))


def frame_rotation_cw(frame: av.VideoFrame) -> int:
    """Clockwise quarter turns (in degrees) that bring a decoded frame upright, from its display matrix."""
    ccw = getattr(frame, "rotation", None)
    if ccw is None:  # PyAV without VideoFrame.rotation: read the side data ourselves
        matrix = frame.side_data.get("DISPLAYMATRIX") if frame.side_data else None
        ccw = _matrix_rotation_ccw(bytes(matrix)) if matrix is not None else 0.0
    clockwise = (-float(ccw)) % 360.0
    quarter = int(round(clockwise / 90.0)) % 4
    if abs(clockwise - 90.0 * quarter) % 360.0 > 1.0:
        log.warning("display rotation of %.1f degrees is not a quarter turn; using %d", clockwise, 90 * quarter)
    return 90 * quarter


def check_frame_size(stream, path: Path) -> None:
    """Refuse a stream whose header promises frames larger than the limits, before any frame is decoded."""
    context = stream.codec_context
    problem = frame_size_problem(int(context.width or 1), int(context.height or 1), str(path))
    if problem:
        raise MediaError(problem)


def first_frame(container: av.container.InputContainer, stream, path: Path) -> av.VideoFrame:
    """Decode the first frame of ``stream`` (for its size, pixel format and rotation); the size limits are checked
    from the header first, and again on the decoded frame (headers can lie)."""
    check_frame_size(stream, path)
    frame = None
    try:
        for frame in container.decode(stream):
            break
    except FFmpegError as exc:
        raise MediaError(f"{path}: the video stream cannot be decoded ({exc}). The file is damaged or truncated: "
                         "export it again.") from exc
    if frame is None:
        raise MediaError(f"{path}: the video stream holds no decodable frame. The file is damaged or truncated: "
                         "export it again.")
    problem = frame_size_problem(frame.width, frame.height, str(path))
    if problem:
        raise MediaError(problem)
    return frame


def index_timestamps(stream) -> np.ndarray | None:
    """Every kept frame's timestamp (stream ticks) from a complete per-frame index (mp4/mov), else None."""
    entries = getattr(stream, "index_entries", None)
    if entries is None or stream.frames <= 0 or len(entries) != stream.frames:
        return None
    stamps = [entry.timestamp for entry in entries if not entry.is_discard]
    return np.sort(np.asarray(stamps, dtype=np.int64))


def scan_timestamps(path: Path) -> np.ndarray:
    """Every video packet's timestamp (stream ticks) by demuxing the file once, without decoding."""
    container, _ = open_input(path)
    try:
        stream = video_stream(container, path)
        stamps = []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            stamps.append(len(stamps) if stamp is None else stamp)
    except FFmpegError as exc:
        raise MediaError(f"{path}: reading the video packets failed ({exc}); the file may be truncated.") from exc
    finally:
        container.close()
    return np.sort(np.asarray(stamps, dtype=np.int64))


def timestamps_are_vfr(stamps: np.ndarray, time_base: Fraction, fps: Fraction) -> bool:
    """True if any frame interval departs from 1/fps by more than rounding can explain."""
    if len(stamps) < 3:
        return False
    intervals = np.diff(stamps).astype(np.float64) * float(time_base)
    nominal = 1.0 / float(fps)
    tolerance = max(1.5 * float(time_base), _VFR_RELATIVE_TOLERANCE * nominal)
    return bool(np.max(np.abs(intervals - nominal)) > tolerance)


def probe_video(path: str | os.PathLike, *, exact: bool = True) -> VideoInfo:
    """Describe a video (or image) file: size after rotation, frames, exact fps, VFR, duration, audio.

    Decodes only the first frame (for rotation and size). With ``exact`` (default) a file without a
    per-frame index is demuxed once (no decoding) to count frames; with ``exact=False`` the count is
    estimated from the header and ``num_frames_exact`` is False.
    """
    container, path = open_input(path)
    try:
        stream = video_stream(container, path)
        fps = stream_fps(stream)
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        frame = first_frame(container, stream, path)
        rotation = frame_rotation_cw(frame)
        codec = stream.codec_context.codec.canonical_name if stream.codec_context.codec else "unknown"
        stream_duration = float(stream.duration * time_base) if stream.duration else None
        container_duration = container.duration / av.time_base if container.duration else None
        header_frames = stream.frames
        stamps = index_timestamps(stream)
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_rate = int(audio.rate) if audio is not None and audio.rate else None
        audio_channels = len(audio.layout.channels) if audio is not None else None
    finally:
        container.close()

    if stamps is None and exact:
        stamps = scan_timestamps(path)
    if stamps is not None:
        num_frames, is_vfr = len(stamps), timestamps_are_vfr(stamps, time_base, fps)
    else:
        seconds = stream_duration or container_duration or 0.0
        num_frames = header_frames if header_frames > 0 else max(1, round(seconds * float(fps)))
        is_vfr = False
    duration = stream_duration or container_duration or num_frames / float(fps)

    width, height = frame.width, frame.height
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        num_frames=num_frames,
        num_frames_exact=stamps is not None,
        fps=fps,
        is_vfr=is_vfr,
        duration=duration,
        rotation=rotation,
        codec=codec,
        pix_fmt=frame.format.name,
        has_audio=audio is not None,
        audio_sample_rate=audio_rate,
        audio_channels=audio_channels,
    )
