"""Streaming video decode to RGB uint8 batches with real timestamps and the display rotation applied.

Memory is bounded by one batch plus the decoder's own frame queue, whatever the video's length.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch
from av.error import FFmpegError

from .errors import MediaError
from .probe import (
    VideoInfo,
    check_frame_size,
    frame_rotation_cw,
    index_timestamps,
    open_input,
    probe_video,
    stream_fps,
    timestamps_are_vfr,
    video_stream,
)

log = logging.getLogger(__name__)

# AVColorSpace tag -> swscale matrix; anything else (untagged included) is BT.601, as FFmpeg assumes.
_TAGGED_MATRIX = {1: "ITU709", 4: "FCC", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
COLOR_MATRICES = {"bt601": "ITU601", "bt709": "ITU709", "bt2020": "BT2020"}


@dataclass(frozen=True)
class DecodedVideo:
    """A whole decoded video: frames (F, H, W, 3) uint8, presentation times (F,) float64 seconds, info."""

    frames: torch.Tensor
    timestamps: torch.Tensor
    info: VideoInfo


def _check_range(start: int, count: int | None, batch: int) -> None:
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a frame index >= 0, got {start!r}")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ValueError(f"count must be None (to the end) or >= 0, got {count!r}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")


def _configure_decoder(stream, threads: int) -> None:
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads


def _decode_all(container, stream, path: Path) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(stream)
    except FFmpegError as exc:
        raise MediaError(f"{path}: decoding failed ({exc}); the file may be truncated or damaged.") from exc


def _frames_after_seek(container, stream, path: Path, start: int) -> Iterator[tuple[int, av.VideoFrame]] | None:
    """(index, frame) from frame ``start`` on, by seeking to the keyframe before it; None if unsafe.

    Only for constant-frame-rate files with a complete index, where a frame's index follows from its
    timestamp. Returns None (caller decodes from the beginning) when the seek lands after ``start``.
    """
    stamps = index_timestamps(stream)
    fps = stream_fps(stream)
    if stamps is None or stream.start_time is None or not stream.time_base:
        return None
    if start >= len(stamps):
        return iter(())
    time_base = Fraction(stream.time_base)
    if timestamps_are_vfr(stamps, time_base, fps):
        return None
    origin = stream.start_time
    ticks_per_frame = 1 / (fps * time_base)
    target = origin + int((start - 1) * ticks_per_frame)
    try:
        container.seek(max(target, origin), backward=True, any_frame=False, stream=stream)
    except FFmpegError:
        return None
    frames = _decode_all(container, stream, path)
    try:
        frame = next(frames)
    except StopIteration:
        return None
    if frame.pts is None:
        return None
    index = round((frame.pts - origin) / ticks_per_frame)
    if index > start:
        log.debug("seek for frame %d landed on frame %d; decoding from the start", start, index)
        return None

    def indexed() -> Iterator[tuple[int, av.VideoFrame]]:
        current = index
        yield current, frame
        for later in frames:
            current = current + 1 if later.pts is None else round((later.pts - origin) / ticks_per_frame)
            yield current, later

    return indexed()


def _frames_from_start(container, stream, path: Path) -> Iterator[tuple[int, av.VideoFrame]]:
    return enumerate(_decode_all(container, stream, path))


def _source_matrix(color_matrix: str | None) -> str | None:
    if color_matrix is None:
        return None
    if color_matrix not in COLOR_MATRICES:
        raise ValueError(f"color_matrix must be None (use the file's tag) or one of {', '.join(COLOR_MATRICES)}, "
                         f"got {color_matrix!r}")
    return COLOR_MATRICES[color_matrix]


def _to_rgb(frame: av.VideoFrame, matrix: str | None) -> np.ndarray:
    """RGB24 pixels, converting YUV with the given matrix or the frame's own colour tag."""
    source = matrix or _TAGGED_MATRIX.get(int(frame.colorspace), "ITU601")
    return frame.to_ndarray(format="rgb24", src_colorspace=source)


def _frame_seconds(frame: av.VideoFrame, index: int, fps: Fraction, previous: float | None) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return previous + 1.0 / float(fps) if previous is not None else index / float(fps)


def iter_video_frames(
    path: str | os.PathLike,
    *,
    start: int = 0,
    count: int | None = None,
    batch: int = 16,
    threads: int = 0,
    color_matrix: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frames uint8 (b, H, W, 3) RGB, pts float64 (b,) seconds) for frames start..start+count-1.

    Frames come upright (display rotation applied) in presentation order with their real timestamps
    (VFR kept); ``b <= batch``. ``threads=0`` lets FFmpeg pick the decoder thread count. YUV is turned
    into RGB with the matrix the file is tagged with (BT.601 when untagged); ``color_matrix="bt601"``
    forces BT.601 for every file, as upstream's OpenCV reader does.
    """
    _check_range(start, count, batch)
    matrix = _source_matrix(color_matrix)
    if not Path(path).is_file():
        raise MediaError(f"Video file not found: {path}")
    return _generate(Path(path), start, count, batch, threads, matrix)


def _generate(
    path: Path, start: int, count: int | None, batch: int, threads: int, matrix: str | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if count == 0:
        return
    container, path = open_input(path)
    try:
        stream = video_stream(container, path)
        check_frame_size(stream, path)
        _configure_decoder(stream, threads)
        fps = stream_fps(stream)
        indexed = _frames_after_seek(container, stream, path, start) if start > 0 else None
        if indexed is None and start > 0:  # the seek was unsafe or missed: decode from a fresh start
            container.close()
            container, path = open_input(path)
            stream = video_stream(container, path)
            _configure_decoder(stream, threads)
        if indexed is None:
            indexed = _frames_from_start(container, stream, path)

        stop = None if count is None else start + count
        quarter_turns = None
        frames_out: np.ndarray | None = None
        pts_out = np.empty(batch, dtype=np.float64)
        filled = 0
        last_time: float | None = None
        for index, frame in indexed:
            if index < start:
                continue
            if stop is not None and index >= stop:
                break
            if quarter_turns is None:
                quarter_turns = -frame_rotation_cw(frame) // 90  # np.rot90 turns counter-clockwise
            rgb = np.rot90(_to_rgb(frame, matrix), quarter_turns)
            if frames_out is None:
                frames_out = np.empty((batch, *rgb.shape), dtype=np.uint8)
            elif rgb.shape != frames_out.shape[1:]:
                raise MediaError(
                    f"{path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but earlier frames are "
                    f"{frames_out.shape[2]}x{frames_out.shape[1]}; videos that change size midway are not supported."
                )
            frames_out[filled] = rgb
            last_time = pts_out[filled] = _frame_seconds(frame, index, fps, last_time)
            filled += 1
            if filled == batch:
                yield frames_out, pts_out.copy()
                frames_out, filled = np.empty_like(frames_out), 0
        if filled:
            yield frames_out[:filled], pts_out[:filled].copy()
    finally:
        container.close()


def read_video(
    path: str | os.PathLike,
    *,
    start: int = 0,
    count: int | None = None,
    threads: int = 0,
    color_matrix: str | None = None,
) -> DecodedVideo:
    """Decode a whole video (or a range of it) into one uint8 tensor (F, H, W, 3); see iter_video_frames."""
    info = probe_video(path)
    chunks, stamps = [], []
    frames_iter = iter_video_frames(path, start=start, count=count, batch=32, threads=threads,
                                    color_matrix=color_matrix)
    for frames, pts in frames_iter:
        chunks.append(torch.from_numpy(frames))
        stamps.append(torch.from_numpy(pts))
    if not chunks:
        raise MediaError(f"{path}: no frames in the requested range (start={start}, count={count}); "
                         f"the video has {info.num_frames} frames.")
    return DecodedVideo(frames=torch.cat(chunks), timestamps=torch.cat(stamps), info=info)
