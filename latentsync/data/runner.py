"""The data pipeline's runner: walk SRC, run every input through upstream's steps in order (readable, resample,
shots, segment; then per segment faces, sync, quality) in N worker processes, skip what is done, and write the
manifest. SRC is only read. Each worker loads its models once, on the device it was given (one GPU per worker,
round robin, where there are GPUs)."""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import faces, manifest, quality, readable, resample, segments, shots, sync
from .files import RECORDS, find_videos, output_name
from .options import PrepareOptions
from .records import SetupError, StepRecord, dropped, run_step

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """One process's models (loaded on first use) and settings."""

    options: PrepareOptions
    device: str = "cpu"
    models_root: str = ""
    _detector: Any = None
    _sync: Any = None
    _quality: Any = None

    def detector(self) -> Any:
        """The face detector (built once)."""
        if self._detector is None:
            from ..face.detectors import create_detector

            dirs = list(self.options.models_dirs) or ([self.models_root] if self.models_root else [])
            try:
                self._detector = create_detector(self.options.detector, models_dirs=dirs, device=self.device)
            except (RuntimeError, ImportError, OSError) as exc:
                raise SetupError(f"the face detector {self.options.detector!r} cannot run: {exc}") from exc
        return self._detector

    def sync_models(self) -> Any:
        """SyncNet v2 + S3FD (loaded once, never downloaded here: the command fetched them before starting)."""
        if self._sync is None:
            from ..metrics.files import load_sync_models

            try:
                self._sync = load_sync_models(self.models_root, device=self.device, allow_download=False)
            except (RuntimeError, OSError, ValueError) as exc:
                raise SetupError(f"the SyncNet models cannot be loaded from {self.models_root}: {exc}") from exc
        return self._sync

    def quality_scorer(self) -> Any:
        """HyperIQA (loaded once), or None with ``--no-quality``."""
        if not self.options.quality:
            return None
        if self._quality is None:
            from .hyper_iqa import load_scorer

            try:
                self._quality = load_scorer(self.models_root, self.device)
            except (OSError, ValueError, RuntimeError) as exc:
                raise SetupError(f"the HyperIQA model cannot be loaded: {exc}") from exc
        return self._quality


@dataclass
class InputResult:
    """What one input produced: its records (by step) and each segment's records, and whether any step ran."""

    rel: str
    records: dict[str, dict] = field(default_factory=dict)
    segments: list[tuple[dict, dict[str, dict]]] = field(default_factory=list)
    ran: int = 0


def process_input(src: Path, out: Path, rel: Path, worker: Worker) -> InputResult:
    """Run every step for one input (each skipped when its record exists); stop at the first drop."""
    opts = worker.options
    result = InputResult(rel.as_posix())

    def step(name: str, item: Path, compute: Callable[[], StepRecord], into: dict) -> bool:
        """Run (or skip) one step, keep its record in ``into``; whether the item goes on."""
        record, ran = run_step(out, name, item, compute)
        into[name] = record.as_dict()
        result.ran += int(ran)
        return record.kept

    recs = result.records
    if not (step(readable.STEP, rel, lambda: readable.check_readable(src, rel), recs)
            and step(resample.STEP, rel, lambda: resample.resample(src, rel, out), recs)
            and step(shots.STEP, rel, lambda: shots.detect_shots(out, rel, opts.scene_threshold,
                                                                  opts.scene_min_content, opts.scene_window,
                                                                  opts.scene_min_len), recs)):
        return result
    scenes = recs[shots.STEP]["data"]["scenes"]
    if not step(segments.STEP, rel, lambda: segments.write_segments(out, rel, scenes, opts.segment_seconds), recs):
        return result
    for plan in recs[segments.STEP]["data"]["segments"]:
        seg, srecs = Path(plan["name"]), {}
        result.segments.append((plan, srecs))
        if not (step(faces.STEP, seg, lambda: faces.align_faces(out, seg, worker.detector(), opts.resolution), srecs)
                and step(sync.STEP, seg, lambda: sync.sync_filter(out, seg, worker.sync_models(), opts.min_sync,
                                                                   opts.max_offset, opts.min_track), srecs)):
            continue

        def score_quality() -> StepRecord:
            """The quality step with the worker's HyperIQA (loaded on first use)."""
            return quality.quality_filter(out, seg, worker.quality_scorer(), opts.min_quality)

        step(quality.STEP, seg, score_quality, srecs)
    return result


_WORKER: dict[str, Worker] = {}  # filled by _init_worker in each worker process, never at import


def _init_worker(options: PrepareOptions, models_root: str, devices: Any, threads: int) -> None:
    """Worker process start: its device (next of the queue), its CPU threads, its lazily loaded models."""
    import torch

    torch.set_num_threads(max(1, threads))
    device = devices.get() if devices is not None else "cpu"
    _WORKER["worker"] = Worker(options, device, models_root)


def _run_in_worker(src: str, out: str, rel: str) -> InputResult:
    return process_input(Path(src), Path(out), Path(rel), _WORKER["worker"])


def pick_devices(device: str, workers: int) -> list[str]:
    """The device of each worker: ``auto`` spreads workers over the GPUs (one model set per worker), else CPU."""
    import torch

    if device == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i % count}" for i in range(workers)] if count else ["cpu"] * workers
    return [device] * workers


def _clean_records(out: Path) -> None:
    """Remove partial record files left by a killed run (final names are always whole)."""
    from ..io.partial import remove_stale_partials

    root = out / RECORDS
    if not root.is_dir():
        return
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                remove_stale_partials(Path(folder) / name)


@dataclass
class PrepareSummary:
    """What a run did: the manifest, how many steps ran (0 on a rerun of a finished run)."""

    manifest: dict
    steps_run: int
    manifest_written: bool


def prepare(src: Path, out: Path, options: PrepareOptions, *, workers: int = 1, device: str = "auto",
            models_root: str = "", progress: bool = True) -> PrepareSummary:
    """Run the pipeline on every video under ``src`` into ``out`` and write ``out/manifest.json``."""
    src, out = Path(src).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _clean_records(out)
    inputs = list(find_videos(src))
    owners: dict[Path, Path] = {}
    clashes: dict[Path, Path] = {}
    for rel in inputs:
        owner = owners.setdefault(output_name(rel), rel)
        if owner != rel:
            clashes[rel] = owner
    results: dict[str, InputResult] = {}
    steps_run = 0
    for rel, owner in clashes.items():  # recorded as a drop of the readable step, so a rerun keeps it
        record, ran = run_step(out, readable.STEP, rel, lambda rel=rel, owner=owner: dropped(
            readable.STEP, rel.as_posix(), f"same output name as {owner.as_posix()}; rename one of them"))
        results[rel.as_posix()] = InputResult(rel.as_posix(), {readable.STEP: record.as_dict()}, ran=int(ran))
        steps_run += int(ran)
    todo = [rel for rel in inputs if rel not in clashes]
    bar = _bar(len(inputs), progress)
    bar.update(len(clashes))
    try:
        for result in _results(src, out, todo, options, workers, device, models_root):
            results[result.rel] = result
            steps_run += result.ran
            bar.update(1)
            kept = sum(1 for _, r in result.segments if r.get(quality.STEP, {}).get("status") == "kept")
            bar.set_postfix_str(f"{result.rel}: {kept}/{len(result.segments)} segments kept", refresh=False)
    finally:
        bar.close()
    entries, segment_entries = [], []
    for rel in inputs:
        result = results[rel.as_posix()]
        entries.append(manifest.input_entry(result.rel, result.records))
        for plan, srecs in result.segments:
            segment_entries.append(manifest.segment_entry(plan["name"], result.rel, plan, srecs))
    data = manifest.build(str(src), options.as_dict(), entries, segment_entries)
    written = manifest.save(out, data)
    return PrepareSummary(data, steps_run, written)


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="data prepare", disable=not enabled, dynamic_ncols=True)


def _results(src: Path, out: Path, todo: list[Path], options: PrepareOptions, workers: int, device: str,
             models_root: str):
    """Yield each input's result as it finishes: in this process for one worker, else in spawned processes."""
    devices = pick_devices(device, max(1, workers))
    cpus = os.cpu_count() or 1
    if workers <= 1 or len(todo) <= 1:
        # The worker processes' thread count here too: float rounding (and so the aligned faces) then does not
        # depend on whether a run, or a resumed run with one input left, used the pool.
        import torch

        saved = torch.get_num_threads()
        torch.set_num_threads(max(1, cpus // max(1, workers)))
        try:
            worker = Worker(options, devices[0], models_root)
            for rel in todo:
                yield process_input(src, out, rel, worker)
        finally:
            torch.set_num_threads(saved)
        return
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for d in devices:
        queue.put(d)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(options, models_root, queue, cpus // workers))
    try:
        pending: set[Future] = {pool.submit(_run_in_worker, str(src), str(out), rel.as_posix()) for rel in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # a setup error or Ctrl-C: queued inputs are not started
        raise
    pool.shutdown(wait=True)
