"""Video file (or still image) + audio file -> lip-synced mp4, streamed in bounded windows.

Memory does not grow with the video: faces are detected in a first pass that keeps only three points per frame;
the second pass decodes, aligns, generates, composites and encodes one window of frames at a time. The random
state, the alignment smoother and the chunking are those of one upstream call, so the output equals the one-shot
result. Both the command line and the path-based ComfyUI node call :func:`lipsync_file`; the work on each window
goes through the same stage functions as the node graph (:mod:`latentsync.pipeline.stages`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, ContextManager, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..configs import NUM_FRAMES_PER_CHUNK, UPSTREAM_FPS
from .face_report import NoFaceError, no_face_message
from . import stages
from .host_heap import trim_host_heap
from .oom import MemoryPlan, free_cached_memory, run_shrinking
from .sampler import LipsyncSampler, SamplerOptions

log = logging.getLogger(__name__)

StageCallback = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; may raise to cancel."""


@dataclass
class RunOptions:
    """Everything a lip-sync run takes besides the models and the file paths."""

    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    length_policy: str = "pingpong"
    detector: str = "auto"
    face_index: Union[int, str] = "largest"
    keep_silent_mouth: bool = False
    smooth: bool = True  # upstream's alignment smoothing across frames (restarted at cuts)
    window_frames: int = NUM_FRAMES_PER_CHUNK  # frames decoded/generated/encoded per step; whole chunks
    crf: int = 18
    preset: str = "medium"  # x264 speed/size trade-off (ultrafast ... veryslow); quality is set by crf
    encode_threads: int = 0  # x264 frame threads; 0: the writer's choice (1.5 per core, at most 8: host memory)
    compile: bool = False  # torch.compile the U-Net and a DiffusersVAE (first use of a shape compiles for 1-2 min)
    still_fps: float = UPSTREAM_FPS
    overwrite: bool = False
    models_dirs: Sequence[str] = ()  # models roots/folders searched for the insightface files
    require_face: bool = False  # raise NoFaceError (before generating) when no frame has a usable face
    vae_batch: int = 16  # faces per VAE call (halved, like batch_chunks, when the device runs out of memory)
    # give the allocator's cached blocks back after the VAE stages and the composite (a lower VRAM peak, at a
    # device-wide wait each): None = where it lowers the peak, i.e. not under cudaMallocAsync (ComfyUI's default),
    # whose pool peaked the same without it (docs/performance.md, session 16); True / False = always / never
    release_cache: Optional[bool] = None
    trim_host_heap: bool = True  # give the C heap's free pages back after each window: a lower host RSS
    metadata: Mapping[str, str] = field(default_factory=dict)  # container tags of the mp4 (e.g. ComfyUI's workflow)
    min_sync: Optional[float] = None  # sync gate: None = off; else segments below this SyncNet confidence are redone
    sync_retries: int = 2  # sync gate: new seeds per segment before its original frames pass through


@dataclass
class RunReport:
    """What a run did: frames, timing, faces found, and any notes (truncated input, memory retries, no face)."""

    output: str
    frames: int
    fps: Fraction
    detector: str
    missing_face_frames: list[int]
    silent_frames: int
    cuts: list[int]
    seconds: float
    seed: int
    notes: list[str] = field(default_factory=list)
    gate: list = field(default_factory=list)  # sync gate: one GatedSegment per segment (empty when the gate is off)

    @property
    def face_frames(self) -> int:
        """Output frames that had a usable face."""
        return self.frames - len(self.missing_face_frames)

    @property
    def no_face(self) -> bool:
        """True when no output frame had a usable face (the output is the input's frames unchanged)."""
        return self.frames > 0 and self.face_frames == 0

    def summary(self) -> str:
        """One line: the output, frames, rate, detector, seed, time, and what was not lip-synced and why."""
        gaps = len(self.missing_face_frames)
        text = (
            f"{self.output}: {self.frames} frames at {float(self.fps):.3f} fps, detector {self.detector}, seed {self.seed}, "
            f"{self.seconds:.1f} s"
        )
        if self.no_face:
            text += "; NO FACE: every frame passed through unchanged"
        elif gaps:
            head = ", ".join(map(str, self.missing_face_frames[:10])) + (" ..." if gaps > 10 else "")
            text += f"; {gaps} frame(s) without a usable face passed through unchanged ({head})"
        if self.silent_frames:
            text += f"; original mouth kept on {self.silent_frames} silent frame(s)"
        for note in self.notes:
            text += f"; {note}"
        if self.gate:
            from .gate_runner import gate_summary

            text += f"; {gate_summary(self.gate)}"
        return text

    def gate_lines(self) -> list[str]:
        """One line per gated segment: its frames and the gate's decision (empty when the gate is off)."""
        return [segment.line() for segment in self.gate]


class FrameSource:
    """Random access to the frames of a video (or one still image) with bounded memory.

    Frames are decoded in blocks; a block is kept while requests stay inside it, so forward and backward sweeps
    (ping-pong loops) decode each block once per sweep. A request for exactly one block takes the block itself.
    """

    def __init__(self, path: str, *, block: int = 32, still_fps: float = UPSTREAM_FPS):
        from ..io import video as vio

        self.path = path
        self.block = block
        from ..io.image import is_image_path, read_image

        self.is_image = is_image_path(path)
        if self.is_image:
            self._still = read_image(path)  # size checked before decoding, EXIF orientation applied
            self.num_frames = 1
            self.fps = Fraction(still_fps).limit_denominator(1001)
            self.size = self._still.shape[:2]
        else:
            info = vio.probe_video(path)
            self.info = info
            self.num_frames = info.num_frames
            self.fps = info.fps
            self.size = (info.height, info.width)
        self._start = -1
        self._frames: Optional[np.ndarray] = None
        self._reader = None  # open decoder positioned after the current block: forward sweeps never re-seek
        self._next_start = -1

    def _load_block(self, index: int) -> None:
        from ..io import video as vio

        start = (index // self.block) * self.block
        if self._reader is None or start != self._next_start:  # a jump: (re)open at the block (seeks)
            self._reader = vio.iter_video_frames(self.path, start=start, batch=self.block)
        frames = next(self._reader, None)
        if frames is None:
            self._frames, self._reader = np.empty((0, *self.size, 3), np.uint8), None
        else:
            self._frames = frames[0]
        self._start = start
        self._next_start = start + len(self._frames)

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (n, H, W, 3)."""
        if self.is_image:
            return np.broadcast_to(self._still, (len(indices), *self._still.shape)).copy()
        whole = self._whole_block(indices)
        if whole is not None:
            return whole
        out = np.empty((len(indices), *self.size, 3), np.uint8)
        for i, idx in enumerate(indices.tolist()):
            if not (self._start <= idx < self._start + (0 if self._frames is None else len(self._frames))):
                self._load_block(idx)
            out[i] = self._frames[idx - self._start]
        return out

    def _whole_block(self, indices: np.ndarray) -> Optional[np.ndarray]:
        """The decoded block itself when ``indices`` are exactly one block in order (the usual window), handed over
        rather than copied: a 1080x1920 window holds 200 MB, and the decoder fills a new array for the next block.
        The block is forgotten here, so nothing the caller does to it reaches a later request."""
        n = len(indices)
        if n == 0 or indices[0] % self.block or not np.array_equal(indices, np.arange(indices[0], indices[0] + n)):
            return None
        if self._start != indices[0] or self._frames is None:
            self._load_block(int(indices[0]))
        if len(self._frames) != n:
            return None
        block, self._frames = self._frames, None
        return block

    @property
    def is_vfr(self) -> bool:
        return not self.is_image and bool(self.info.is_vfr)

    def iter_all(self, batch: int = 32):
        """All frames in order, in batches, with their presentation times in seconds (the detection pass)."""
        from ..io import video as vio

        if self.is_image:
            yield 0, self._still[None], np.zeros(1)
            return
        start = 0
        for frames, pts in vio.iter_video_frames(self.path, batch=batch):
            yield start, frames, pts
            start += len(frames)


class _HostWindow:
    """A window's decoded frames on the host until the device has its copy. With ``decode_again`` they are dropped
    then, so the host does not hold this window beside the next one being decoded while the device works (199 MB at
    1080x1920); a retry after running out of memory decodes them again. Without it they are kept (the caller still
    needs them)."""

    def __init__(self, frames: np.ndarray, decode_again: Optional[Callable[[], np.ndarray]] = None):
        self._frames: Optional[np.ndarray] = frames
        self._decode_again = decode_again

    def take(self) -> np.ndarray:
        frames = self._frames if self._frames is not None else self._decode_again()
        self._frames = None if self._decode_again is not None else frames
        return frames


def releases_cache(device: torch.device, release_cache: Optional[bool], backend: Optional[str] = None) -> bool:
    """Whether a run on ``device`` empties the allocator's cache between its stages (``RunOptions.release_cache``).
    Left to the pack (None), it does except under ``cudaMallocAsync``: there the pool's peak was the same without the
    release, and each release waits for the whole device, which keeps the host from queueing the next stage."""
    if device.type != "cuda" or release_cache is False:
        return False
    if release_cache:
        return True
    return (backend or torch.cuda.get_allocator_backend()) != "cudaMallocAsync"


@contextlib.contextmanager
def _cancel_on_error(queued: deque):
    """Cancel the encode jobs not yet started when the run fails (the writer then discards its output)."""
    try:
        yield
    except BaseException:
        for _, job in queued:
            job.cancel()
        raise


class _ExitTimed:
    """``cm`` with its exit under ``stage(name)``: the writer's close (x264's buffered frames encoded, the audio
    muxed, the file finished) is its own stage, not time outside every stage."""

    def __init__(self, cm, stage: Callable[[str], ContextManager], name: str):
        self.cm, self.stage, self.name = cm, stage, name

    def __enter__(self):
        return self.cm.__enter__()

    def __exit__(self, *exc_info):
        with self.stage(self.name):
            return self.cm.__exit__(*exc_info)


def _check_paths(video_path: str, audio_path: str, output_path: str, overwrite: bool) -> None:
    """Inputs exist and are usable media (headers only), the output is new (or may be replaced) and is no input."""
    from ..io.errors import MediaError
    from ..preflight import inputs_problem
    from ..safe_paths import overwrite_problem

    for p, what in ((video_path, "video"), (audio_path, "audio")):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{what} input not found: {p}")
    problem = overwrite_problem(output_path, [("video input", video_path), ("audio input", audio_path)])
    if problem:
        raise ValueError(problem)
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(f"{output_path} exists; choose another output path or allow overwriting")
    parent = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Output folder does not exist: {parent}")
    problem = inputs_problem(video_path, audio_path)
    if problem:
        raise MediaError(problem)


def _truncation_note(path: str, listed: int, decoded: int) -> str:
    return (f"{path}: its index lists {listed} frames but only {decoded} could be decoded (the file is truncated or "
            "damaged); the output uses those. Export or re-encode the video to use every frame.")


@torch.no_grad()
def lipsync_file(
    models,
    vae,
    video_path: str,
    audio_path: str,
    output_path: str,
    options: RunOptions,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    progress: Optional[StageCallback] = None,
    points: Optional[np.ndarray] = None,
    timer: Optional[Callable[[str], ContextManager]] = None,
    sync_models=None,
    sync_options=None,
    shards=None,
) -> RunReport:
    """Lip-sync ``video_path`` (or a still image) to ``audio_path`` and write an H.264 + AAC mp4 to ``output_path``.

    ``points`` (F, 3, 2) replaces face detection with given alignment points for the source frames (benchmarks,
    external trackers). ``timer(stage)`` returns a context manager wrapped around each stage (profiling).
    ``sync_models`` (:class:`latentsync.metrics.score.SyncModels`) score the segments when ``options.min_sync`` is
    set (the sync gate, see :mod:`latentsync.pipeline.gate_runner`), with ``sync_options``
    (:class:`latentsync.metrics.score.SyncOptions`, default upstream's evaluation settings). ``shards``
    (:class:`latentsync.distributed.shard.ShardPool`) generates the windows on its devices' workers, this process
    doing the rest; ``models.unet`` and ``vae`` are then unused.
    """
    from ..audio.features import whisper_features
    from ..audio.waveform import load_audio, to_16k_mono
    from ..audio.windows import upstream_frame_count
    from ..face.detectors import create_detector
    from ..face.mask import fixed_mask
    from ..face.track import FaceTrack, FaceTracker, frame_signatures
    from ..io.video import VideoWriter
    from .length import plan_length

    started = time.monotonic()
    device = torch.device(device)
    _check_paths(video_path, audio_path, output_path, options.overwrite)
    gated = options.min_sync is not None
    if gated and shards is not None:
        raise ValueError("the sync gate (min_sync) runs on one device; leave min_sync unset to shard a video")
    if gated:
        from ..option_checks import check_number
        from .gate_runner import MIN_SYNC, SYNC_RETRIES

        check_number(options.min_sync, MIN_SYNC, "min_sync")
        check_number(options.sync_retries, SYNC_RETRIES, "sync_retries")
        if sync_models is None:
            raise ValueError("min_sync (the sync gate) needs SyncNet v2: pass sync_models (the gate scores the "
                             "tracked faces, no S3FD needed: latentsync.metrics.files.load_sync_models(root, "
                             "detector=False)), or leave min_sync unset")
    sampler_options = dataclasses.replace(options.sampler)  # the memory plan may lower batch_chunks: keep the caller's
    sampler_options.validate()
    report = progress or (lambda stage, done, total: None)
    stage = timer or (lambda name: contextlib.nullcontext())
    notes: list[str] = []

    # Audio: features for the whole clip (50 rows/s, small) and the waveform for the output track.
    with stage("audio"):
        waveform, sample_rate = load_audio(audio_path)
        wav16 = to_16k_mono(waveform, sample_rate)
        whisper_dtype = torch.float16 if device.type == "cuda" else torch.float32  # upstream: fp16 on every GPU
        features = whisper_features(models.whisper, wav16, device=device, dtype=whisper_dtype)
    report("audio", 1, 1)

    source = FrameSource(video_path, still_fps=options.still_fps)
    fps = source.fps
    audio_frames = upstream_frame_count(features.shape[0], float(fps))
    policy = "pingpong" if source.is_image else options.length_policy
    plan = plan_length(source.num_frames, audio_frames, policy)
    n_out = plan.num_frames
    needed = int(plan.source_index.max()) + 1 if n_out else 0

    # Pass 1: detect and track faces on the source frames the output uses (three points per frame are kept).
    parts, stamps = [], []
    max_faces = 0
    if points is not None:
        given = np.asarray(points, np.float32)
        if given.ndim != 3 or given.shape[1:] != (3, 2) or len(given) < needed:
            raise ValueError(f"points must be ({needed}, 3, 2) alignment points, got {given.shape}")
        parts.append(FaceTrack(given[:needed], np.ones(needed, bool), np.zeros(needed, bool),
                               np.zeros((needed, 4), np.float32), detector="given points"))
        max_faces = 1
        if source.is_vfr:
            stamps = [pts for _, _, pts in source.iter_all()]
    else:
        detector = create_detector(options.detector, models_dirs=list(options.models_dirs), device=device.type)
        tracker = FaceTracker(source.size, face_index=options.face_index, detector=detector.describe())
        decoded = 0
        with stage("detect"):
            for start, frames, pts in source.iter_all():
                if start >= needed:
                    break
                frames, pts = frames[: needed - start], pts[: needed - start]
                detections = detector.detect(frames)
                max_faces = max([max_faces] + [len(d) for d in detections])
                parts.append(tracker.push(detections, signatures=frame_signatures(frames)))
                stamps.append(np.asarray(pts, np.float64))
                decoded = start + len(frames)
                report("detect", min(decoded, needed), needed)
            parts.append(tracker.finish())
        if decoded < needed:  # the index promised frames the file does not hold (cut off while copying)
            if decoded == 0:
                from ..io.errors import MediaError

                raise MediaError(f"{video_path}: no frame could be decoded; the file is truncated or damaged. Export "
                                 "or re-encode the video.")
            notes.append(_truncation_note(video_path, source.num_frames, decoded))
            log.warning("%s", notes[-1])
            source.num_frames = decoded
            plan = plan_length(decoded, audio_frames, policy)
            n_out = plan.num_frames
    track = FaceTrack.concat(parts)
    resolution = models.resolution
    matrices = stages.face_matrices(track.points, track.resets, resolution, smooth=options.smooth)
    found = torch.from_numpy(track.found)
    src = plan.source_index
    if n_out and not bool(found[src].any()):
        message = no_face_message(video_path, n_out, options.face_index, max_faces)
        if options.require_face:
            raise NoFaceError(message)
        log.warning("%s", message)
        notes.append(message.split(": ", 1)[1])

    silent = None
    if options.keep_silent_mouth:
        silent = stages.silent_mask(wav16, n_out, fps)
    apply = stages.frames_to_paste(n_out, found[src], silent)
    # Variable frame rate: when the output keeps the source frames in order, audio windows follow the frames'
    # real timestamps and the output keeps them; otherwise (loops, still images) frames are evenly spaced.
    timestamps = None
    if source.is_vfr and n_out and bool(torch.equal(src, torch.arange(n_out))):
        pts = np.concatenate(stamps)[:n_out]
        timestamps = pts - pts[0]
    times = None if timestamps is None else torch.from_numpy(timestamps)
    mask = fixed_mask(resolution)
    unet = models.unet
    if options.compile and shards is None:  # sharded: the workers compile their own
        from .compiled import maybe_compile, maybe_compile_vae

        unet = maybe_compile(unet, True, device=device, frames=sampler_options.chunk_frames,
                             fixed_batch=sampler_options.batch_chunks)
        maybe_compile_vae(vae, True, device=device)
    video_plan = stages.plan_video(n_out, sampler_options, resolution)
    sampler_options = video_plan.options  # the seed resolved; the memory plan still lowers its batch_chunks
    sampler = stages.new_sampler(unet, video_plan, device=device, dtype=dtype)
    steps_total = sampler.steps_total(n_out)
    memory = MemoryPlan(batch_chunks=sampler_options.batch_chunks, vae_batch=max(1, int(options.vae_batch)))
    skip = stages.skip_test(apply)

    def process(a: int, b: int, held: _HostWindow, plan_now: MemoryPlan, smp, on_step) -> tuple:
        """One window on the device: align, encode, sample (with ``smp``), decode, composite; returns the frames on
        the host (pinned when on CUDA, the copy still in flight) and the event that marks the copy done."""
        smp.options.batch_chunks = plan_now.batch_chunks
        frames, mats, faces = align_window(a, b, held.take())
        with stage("vae_encode"):
            encoded = stages.encode(vae, faces, mask, batch_size=plan_now.vae_batch)
            settle()
        with stage("sample"):
            latents = smp.sample_vae_latents(encoded, window_audio(a, b), skip_chunk=skip, callback=on_step,
                                             steps_total=steps_total)
        with stage("vae_decode"):
            generated = stages.decode(vae, latents, faces, mask, batch_size=plan_now.vae_batch)
            settle()
        return composite_window(a, b, frames, mats, generated)

    releases = releases_cache(device, options.release_cache)

    def settle() -> None:
        """Give the cached blocks of the stage just done back to the device, so that the VAE's, the U-Net's and the
        compositing's temporaries (each a different set of sizes) are not all held at once."""
        if releases:
            free_cached_memory(device)

    def align_window(a: int, b: int, source_frames: np.ndarray) -> tuple:
        """A window's frames on the device, their alignment matrices and aligned faces."""
        frames = torch.from_numpy(source_frames).to(device)
        mats = matrices[src[a:b]]
        with stage("align"):
            return frames, mats, stages.align_faces(frames, mats, resolution)

    def window_audio(a: int, b: int) -> torch.Tensor:
        return stages.audio_windows(features, b - a, fps, start_frame=a,
                                    timestamps=None if times is None else times[a:b])

    def composite_window(a: int, b: int, frames: torch.Tensor, mats: torch.Tensor, generated: torch.Tensor) -> tuple:
        """Paste a window's generated faces into its frames; the frames on the host (see ``process``): on a GPU
        already in the encoder's yuv420p (half the bytes to copy and hold, no conversion in the encode thread),
        except for the sync gate, which scores RGB frames."""
        with stage("composite"):
            # matrices and apply from the host: device copies would be read straight back, each a wait for the GPU
            out = stages.composite(frames, generated, mats, resolution, apply=apply[a:b])
            if device.type != "cuda":
                return out.cpu(), None
            if not gated and out.shape[1] % 2 == 0 and out.shape[2] % 2 == 0:
                from ..io.yuv import rgb_to_yuv420

                out = rgb_to_yuv420(out)
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            del out
            settle()
            return host, done

    def process_fitting(a: int, b: int, held: _HostWindow, smp=None, on_step=None) -> tuple:
        """``process``, redone with less work per call after running out of memory (same random draws)."""
        smp = smp or sampler
        on_step = on_step if on_step is not None else functools.partial(report, "sample")
        state = smp.snapshot()

        def undo() -> None:
            smp.restore(state)
            free_cached_memory(device)

        return run_shrinking(lambda plan_now: process(a, b, held, plan_now, smp, on_step), memory,
                             where=f"frames {a}-{b - 1} of {video_path}", before_retry=undo, on_shrink=notes.append)

    def decode_again(a: int, b: int) -> np.ndarray:
        """A window's frames decoded once more, in the reader's thread (the source is not shared between threads)."""
        with stage("decode_wait"):
            return reader.submit(source.get, src[a:b].numpy()).result()

    def start_sharded(a: int, b: int, source_frames: np.ndarray) -> tuple:
        """Align a window here and hand its generation to a shard worker (returns at once); the frames wait on the
        host (windows in flight would crowd the device)."""
        _, mats, faces = align_window(a, b, source_frames)
        job = shards.submit(video_plan, a, b, faces, window_audio(a, b), mask, apply[a:b],
                            vae_batch=max(1, int(options.vae_batch)), dtype=dtype)
        return a, b, source_frames, mats, job

    def finish_sharded(a: int, b: int, source_frames: np.ndarray, mats: torch.Tensor, job) -> tuple:
        """Gather a window from its worker and composite it: (end frame, host frames, copy-done event)."""
        with stage("generate_wait"):
            generated = shards.result(job).to(device)
        report("sample", sampler.steps_total(b), steps_total)
        return (b, *composite_window(a, b, torch.from_numpy(source_frames).to(device), mats, generated))

    def write(writer, host: torch.Tensor, done: Optional[torch.cuda.Event]) -> None:
        if done is not None:
            done.synchronize()
        (writer.write_yuv420 if host.dim() == 3 else writer.write)(host.numpy())  # yuv420p planes or RGB frames

    def drain(keep: int) -> None:
        """Wait for queued writes until at most ``keep`` remain, reporting each finished one."""
        with stage("encode_wait"):
            while len(queued) > keep:
                end, job = queued.popleft()
                job.result()
                report("write", end, n_out)

    chunk = sampler_options.chunk_frames
    window = max(chunk * sampler_options.batch_chunks, options.window_frames // chunk * chunk)  # whole chunks
    spans = [(a, min(a + window, n_out)) for a in range(0, n_out, window)]
    if LipsyncSampler.interleave_tail and shards is None and len(spans) > 1 and spans[-1][1] - spans[-1][0] < chunk:
        spans[-2:] = [(spans[-2][0], spans[-1][1])]  # a lone tail joins the last full chunks, to take turns with them
    gated_segments: list = []
    if gated:  # the gate's segments are the windows: each is generated, scored, redone or passed through whole
        from .gate_runner import gate_segments

        spans = gate_segments(n_out, fps, chunk)
        main = [sampler]  # the sampler of the run's own seed, positioned at the next frame it would generate

    def gated_window(a: int, b: int, source_frames: np.ndarray) -> torch.Tensor:
        """The sync gate on one segment: frames to write (generated with the first passing seed, else the source
        frames) and its decision appended to ``gated_segments``."""
        from ..metrics.gate import gate_segment
        from .gate_runner import GatedSegment, segment_audio

        def generate(seed: int) -> torch.Tensor:
            if seed == video_plan.seed:  # attempt 0: the run's own noise, exactly as without the gate
                if main[0].frames_done != a:  # an earlier segment was not generated: start afresh at this frame
                    main[0] = stages.new_sampler(unet, video_plan, device=device, dtype=dtype, start_frame=a)
                    main[0].steps_done = sampler.steps_total(a)
                host, done = process_fitting(a, b, _HostWindow(source_frames), main[0])
            else:  # a retry: this segment's chunks with noise from the retry's seed
                retry_plan = dataclasses.replace(video_plan, options=dataclasses.replace(sampler_options, seed=seed))
                smp = stages.new_sampler(unet, retry_plan, device=device, dtype=dtype, start_frame=a)
                host, done = process_fitting(a, b, _HostWindow(source_frames), smp, lambda done, total: None)
            if done is not None:
                done.synchronize()
            return host

        # The faces and shots are known: the tracked box where the face was found (where it was not, nothing was
        # pasted) and the tracker's cuts, so scoring a segment costs SyncNet and its crops, not an S3FD pass and a
        # cut scan over every frame.
        ids = src[a:b].numpy()
        boxes = [track.boxes[i][None] if track.found[i] else np.zeros((0, 4), np.float32) for i in ids]
        jumps = np.abs(np.diff(ids.astype(np.int64))) > 1  # a looped video's jump back to its start is a cut too
        cuts = [j for j in range(1, len(ids)) if track.resets[ids[j]] or jumps[j - 1]]
        frames, decision = gate_segment(
            generate, torch.from_numpy(source_frames), segment_audio(wav16, a, b, fps, times), fps, sync_models,
            min_sync=float(options.min_sync), max_retries=int(options.sync_retries), base_seed=video_plan.seed,
            options=sync_options, boxes=boxes, cuts=cuts)
        gated_segments.append(GatedSegment(a, b, decision))
        level = logging.INFO if decision.decision == "accepted" else logging.WARNING
        log.log(level, "%s: sync gate %s", os.path.basename(video_path), gated_segments[-1].line())
        report("gate", len(gated_segments), len(spans))
        return frames

    # Decoding the next window and encoding the last ones run in their own threads (PyAV releases the GIL), so
    # the device rarely waits on the CPU; at most two windows wait for the encoder, so memory stays bounded.
    # The writer is closed last (the executors wait for their jobs first); on an error, queued writes are dropped.
    queued: deque = deque()
    in_flight: deque = deque()  # sharded: windows handed to the workers, gathered in order (the next ones queued)
    with _ExitTimed(VideoWriter(output_path, fps, audio=(waveform, sample_rate), crf=options.crf, preset=options.preset,
                                threads=options.encode_threads, overwrite=options.overwrite, timestamps=timestamps,
                                metadata=dict(options.metadata) or None), stage, "write_close") as writer, \
            ThreadPoolExecutor(1, thread_name_prefix="latentsync-decode") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="latentsync-encode") as encoder, \
            _cancel_on_error(queued):
        upcoming = reader.submit(source.get, src[spans[0][0]:spans[0][1]].numpy()) if spans else None
        for i, (a, b) in enumerate(spans):
            with stage("decode_wait"):
                decoded = upcoming.result()
            upcoming = reader.submit(source.get, src[spans[i + 1][0]:spans[i + 1][1]].numpy()) \
                if i + 1 < len(spans) else None
            if shards is not None:
                in_flight.append(start_sharded(a, b, decoded))
                if len(in_flight) <= shards.depth:
                    continue
                b, host, done = finish_sharded(*in_flight.popleft())
            elif gated:
                host, done = gated_window(a, b, decoded), None
            else:  # the holder keeps the only reference to the frames, so the upload to the device frees them
                held, decoded = _HostWindow(decoded, functools.partial(decode_again, a, b)), None
                host, done = process_fitting(a, b, held)
            del decoded
            drain(keep=1)
            if options.trim_host_heap:  # the window's (and, after the first, the compile's) freed host buffers
                with stage("host_trim"):
                    trim_host_heap()
            queued.append((b, encoder.submit(write, writer, host, done)))
        while in_flight:
            b, host, done = finish_sharded(*in_flight.popleft())
            drain(keep=1)
            queued.append((b, encoder.submit(write, writer, host, done)))
        drain(keep=0)
    if shards is not None:
        log.info("%s: %s", os.path.basename(video_path), shards.take_stats().line())
    return RunReport(
        output=output_path, frames=n_out, fps=fps, detector=track.detector,
        missing_face_frames=torch.nonzero(~found[src]).flatten().tolist(),
        silent_frames=0 if silent is None else int(silent.sum()), cuts=track.cut_frames,
        seconds=time.monotonic() - started, seed=sampler.seed, notes=notes, gate=gated_segments,
    )
