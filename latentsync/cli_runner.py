"""The command's job loop: check every job (inputs, output, job cache), load the models once, run, record.

Every job ends with one summary line on stdout (also under ``--quiet``), and in a batch with one manifest entry.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .batch_manifest import Manifest, ManifestEntry, default_manifest_path, manifest_path_problem
from .cli_checks import UsageError
from .cli_jobs import Job, input_problem, job_args, output_problem, protected_files
from .exit_codes import (EXIT_BATCH, EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODELS, EXIT_NO_FACE, EXIT_OK,
                         EXIT_USAGE)
from .locations import default_models_dir
from .progress import Progress

log = logging.getLogger("latentsync")


@dataclass
class Outcome:
    """How one job ended (a manifest status), what to say about it, and the exit code of a single-job run."""

    status: str
    message: str = ""
    exit_code: int = EXIT_OK
    report: Any = None


def say(line: str) -> None:
    """A result line on stdout: printed whatever the log level, so scripts and ``--quiet`` users see every job."""
    print(line, file=sys.stdout, flush=True)


class JobRunner:
    """One invocation's jobs, with the settings that make up their cache keys."""

    def __init__(self, args: argparse.Namespace, jobs: list[Job], device: Any):
        from .pipeline.loading import pick_dtype

        self.args, self.jobs, self.device = args, jobs, device
        self.dtype = pick_dtype(device, args.dtype)
        self.root = args.models_dir or default_models_dir()
        self.cache = None
        if not args.no_cache and args.seed != -1:  # a random seed asks for a new result every time
            from .job_cache import JobCache, default_cache_dir

            self.cache = JobCache(args.cache_dir or default_cache_dir())
        self.manifest: Optional[Manifest] = None
        self._settings: Optional[dict[str, Any]] = None
        self.protected = protected_files(jobs, [("--unet file", args.unet), ("--whisper file", args.whisper),
                                                ("--vae file", args.vae), ("batch list", self._list_file())]
                                         + [("model file", p) for p in self.model_paths().values()])

    def _list_file(self) -> Optional[str]:
        batch = self.args.batch
        return batch if batch and os.path.isfile(batch) else None

    def model_paths(self) -> dict[str, str]:
        """The model files this run uses, where they exist already (explicit ones, else those in the models root)."""
        from . import model_files as mf

        specs = {"unet": (self.args.unet, mf.UNET_FILES[self.args.version]), "whisper": (self.args.whisper,
                 mf.WHISPER_TINY), "vae": (self.args.vae, mf.VAE_FT_MSE)}
        found = {name: explicit or spec.find(self.root) for name, (explicit, spec) in specs.items()}
        if getattr(self.args, "min_sync", None) is not None:  # the gate's scores change the result
            from .metrics.files import SYNCNET_V2

            found[SYNCNET_V2.key] = SYNCNET_V2.find(self.root)
        return {name: path for name, path in found.items() if path}

    def settings(self, job: Optional[Job] = None) -> dict[str, Any]:
        """Every option that changes ``job``'s output (batch chunks and compiling do not): the run's, worked out
        once, with the job's own options (a CSV/JSONL batch) applied."""
        if self._settings is None:
            self._settings = self._option_settings(self.args, self._detector())
        if job is None or not job.options:
            return self._settings
        return self._option_settings(job_args(self.args, job), self._settings["detector"])

    def _detector(self) -> str:
        """The detector the run uses, by its canonical name ('auto' resolved as create_detector picks)."""
        from .face.detector_registry import canonical

        detector = canonical(self.args.detector)  # 'dlib' and 'offline' are one detector, one key
        if detector == "auto":  # the first registered detector that can run
            from .face.detectors import detector_status

            detector = next((name for name, why in detector_status([self.root]).items() if why is None), "offline")
        return detector

    def _option_settings(self, a: argparse.Namespace, detector: str) -> dict[str, Any]:
        return {"version": a.version, "steps": a.steps, "guidance": a.guidance, "seed": a.seed,
                "deepcache": bool(a.deepcache), "noise": "cpu" if a.noise_on_cpu else self.device.type,
                "posterior": "mean" if a.posterior_mean else "sample", "length_policy": a.length_policy,
                "keep_silent_mouth": a.keep_silent_mouth, "detector": detector, "face_index": a.face_index,
                "crf": a.crf, "x264_preset": a.preset, "still_fps": a.fps, "device": self.device.type,
                "dtype": str(self.dtype), **({"fix_offset": True} if getattr(a, "fix_offset", False) else {}),
                **({"encode_threads": a.encode_threads} if a.encode_threads else {}),
                **({"min_sync": a.min_sync, "sync_retries": a.sync_retries}
                   if getattr(a, "min_sync", None) is not None else {})}

    def key(self, job: Job, models: Optional[dict[str, str]] = None) -> Optional[str]:
        """The job's cache key, or None without a cache or before every model file is on disk."""
        if self.cache is None:
            return None
        from .job_cache import job_key

        needed = {"unet", "whisper", "vae"}
        if getattr(self.args, "min_sync", None) is not None:
            from .metrics.files import SYNCNET_V2

            needed.add(SYNCNET_V2.key)
        models = {**self.model_paths(), **(models or {})}
        if set(models) != needed or self.settings(job)["seed"] == -1:  # a random seed is a new result each time
            return None
        return job_key(job.video, job.audio, models, self.settings(job))

    def open_manifest(self) -> None:
        """The batch manifest (UsageError when its path is taken by another file or is an input)."""
        path = Path(self.args.manifest) if self.args.manifest else default_manifest_path(self.args.batch,
                                                                                         self.args.output_dir)
        problem = manifest_path_problem(path) or output_problem(Job("", "", str(path)), self.protected)
        if problem:
            raise UsageError(problem)
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(path)

    def triage(self, job: Job) -> Optional[Outcome]:
        """How a job ends without running (missing input, protected output, cached, existing), or None to run it."""
        from .preflight import inputs_problem

        problem = input_problem(job) or output_problem(job, self.protected)
        if problem:
            return Outcome("failed", problem, EXIT_USAGE)
        exists = os.path.exists(job.output)
        if exists and not self.args.overwrite and self.args.batch:
            return Outcome("exists", f"{job.output} exists, skipping (finished earlier)")
        problem = inputs_problem(job.video, job.audio)
        if problem:
            return Outcome("failed", problem, EXIT_INPUT)
        cached = self.from_cache(job)
        if cached is not None:
            return cached
        if exists and not self.args.overwrite:
            return Outcome("failed", f"{job.output} exists; pass --overwrite or choose another --output", EXIT_USAGE)
        return None

    def triage_all(self) -> tuple[list[Job], int, Optional[Outcome]]:
        """Every job triaged and those that end here recorded: (jobs left to run, failures, the first failure).
        A single job's run stops at its failure; a batch goes on."""
        if not self.jobs:
            log.warning("no jobs found in %s", self.args.batch)
        todo, failed = [], 0
        for job in self.jobs:
            outcome = self.triage(job)
            if outcome is None:
                todo.append(job)
                continue
            self.record(job, outcome)
            failed += outcome.status == "failed"
            if not self.args.batch and outcome.status == "failed":
                return todo, failed, outcome
        return todo, failed, None

    def from_cache(self, job: Job) -> Optional[Outcome]:
        """The earlier identical job's result delivered to ``job.output``, or None (no cache, no entry)."""
        from .job_cache import deliver

        key = self.key(job)
        entry = self.cache.lookup(key) if key else None
        if entry is None:
            return None
        if entry.no_face and self.args.require_face:
            return Outcome("failed", f"{job.video}: no usable face (found by an identical earlier run, whose output "
                                     f"is {entry.output}); --require-face refuses it", EXIT_NO_FACE)
        try:
            copied = deliver(entry, job.output, self.args.overwrite)
        except OSError as exc:
            return Outcome("failed", f"{job.output}: cannot copy the cached result {entry.output}: {exc}", EXIT_ERROR)
        how = f"copied from {entry.output}" if copied else "already there"
        return Outcome("cached", f"{job.output}: cached result of an identical earlier run ({how}): {entry.summary}")

    def record(self, job: Job, outcome: Outcome) -> None:
        """Print the job's line, add its manifest entry and (when it wrote a video) its cache entry."""
        report = outcome.report
        if outcome.status == "failed":
            log.error("%s failed: %s", Path(job.video).name, outcome.message)
        elif outcome.status == "exists":
            log.info("%s", outcome.message)
        else:
            say(outcome.message)
        if self.manifest is not None:
            self.manifest.add(ManifestEntry(
                video=job.video, audio=job.audio, output=job.output, status=outcome.status, message=outcome.message,
                frames=None if report is None else report.frames,
                face_frames=None if report is None else report.face_frames,
                seconds=None if report is None else round(report.seconds, 3)))

    def remember(self, job: Job, report: Any, models: dict[str, str]) -> None:
        """Add a finished job to the cache."""
        key = self.key(job, models)
        if key is not None:
            try:
                self.cache.record(key, job.output, report.summary(), report.no_face)
            except OSError as exc:
                log.warning("could not record the job in the cache %s: %s", self.cache.folder, exc)


def load_everything(args: argparse.Namespace, device: Any, dtype: Any) -> Any:
    """Find (or download) the model files and load them; returns the loaded models (their ``files`` and ``vae``)."""
    from . import model_files as mf
    from .pipeline.loading import load_models

    root = args.models_dir or default_models_dir()
    unet_spec = mf.UNET_FILES[args.version]
    explicit = {unet_spec.key: args.unet, mf.WHISPER_TINY.key: args.whisper, mf.VAE_FT_MSE.key: args.vae}
    specs = [s for s in (unet_spec, mf.WHISPER_TINY, mf.VAE_FT_MSE) if not explicit[s.key]]
    paths = {k: v for k, v in explicit.items() if v}
    paths.update(mf.ensure_files(specs, root, allow_download=not args.no_download))
    mf.ensure_detector_files(args.detector, [root], allow_download=not args.no_download)
    for key, path in paths.items():
        log.info("Model file %s: %s", key, path)
    return load_models(paths[unet_spec.key], paths[mf.WHISPER_TINY.key], version=args.version, device=device,
                       dtype=dtype, vae_path=paths[mf.VAE_FT_MSE.key])


def run_options(args: argparse.Namespace, models: Any, device: Any) -> Any:
    """The runner's options from the command line's."""
    from .pipeline.runner import RunOptions
    from .pipeline.sampler import SamplerOptions

    seed = None if args.seed == -1 else args.seed
    batch_chunks = args.batch_chunks or (2 if models.resolution <= 256 and device.type == "cuda" else 1)
    face_index = args.face_index if args.face_index in ("largest", "speaker") else int(args.face_index)
    return RunOptions(
        sampler=SamplerOptions(steps=args.steps, guidance_scale=args.guidance, seed=seed, deepcache=args.deepcache,
                               noise_device="cpu" if args.noise_on_cpu else None,
                               posterior="mean" if args.posterior_mean else "sample", batch_chunks=batch_chunks),
        length_policy=args.length_policy, detector=args.detector, face_index=face_index,
        keep_silent_mouth=args.keep_silent_mouth, crf=args.crf, preset=args.preset, still_fps=args.fps,
        encode_threads=args.encode_threads,
        overwrite=args.overwrite, models_dirs=[args.models_dir or default_models_dir()], compile=args.compile,
        require_face=args.require_face, min_sync=getattr(args, "min_sync", None),
        sync_retries=getattr(args, "sync_retries", None) or 0,
    )


def prepare_audio(runner: JobRunner, job: Job) -> tuple[str, Optional[Outcome], Callable[[], None]]:
    """The job's audio path, a failure Outcome or None, and a clean-up: with ``--fix-offset`` the audio shifted by
    SyncNet's measured offset into a temporary wav (see latentsync/metrics/offset.py), else the file as given."""
    if not getattr(runner.args, "fix_offset", False):
        return job.audio, None, lambda: None
    from .metrics.offset import FileOffsetFixer
    from .model_files import ModelFilesMissing

    if getattr(runner, "offset_fixer", None) is None:
        runner.offset_fixer = FileOffsetFixer(runner.root, runner.device, allow_download=not runner.args.no_download)
    tmp = tempfile.mkdtemp(prefix="latentsync_offset_")
    cleanup = lambda: shutil.rmtree(tmp, ignore_errors=True)  # noqa: E731
    fixed = os.path.join(tmp, Path(job.audio).stem + "_offset.wav")
    try:
        record = runner.offset_fixer.fix(job.video, job.audio, fixed)
    except ModelFilesMissing as exc:
        cleanup()
        return job.audio, Outcome("failed", f"--fix-offset: {exc}", EXIT_MODELS), lambda: None
    except (OSError, ValueError) as exc:
        cleanup()
        return job.audio, Outcome("failed", f"--fix-offset: {exc}", EXIT_INPUT), lambda: None
    log.info("%s: --fix-offset: %s", Path(job.video).name, record.report())
    return (fixed if record.applied else job.audio), None, cleanup


def speaker_options(runner: JobRunner, job: Job, audio: str, options: Any) -> tuple[Any, Optional[Outcome]]:
    """``options`` with ``face_index`` replaced by the video's speaker plan (latentsync/metrics/speaker.py), or a
    failure Outcome (SyncNet files missing: the CLI's missing-files message)."""
    import dataclasses

    from .metrics.files import load_sync_models
    from .metrics.speaker import plan_for_file
    from .model_files import ModelFilesMissing

    try:
        if getattr(runner, "sync_models", None) is None or runner.sync_models.s3fd is None:  # the gate's lack S3FD
            runner.sync_models = load_sync_models(runner.root, device=runner.device,
                                                  allow_download=not runner.args.no_download)
        plan = plan_for_file(job.video, audio, runner.sync_models.syncnet, runner.sync_models.s3fd)
    except ModelFilesMissing as exc:
        return options, Outcome("failed", f"--face-index speaker: {exc}", EXIT_MODELS)
    except (OSError, ValueError) as exc:
        return options, Outcome("failed", f"--face-index speaker: {exc}", EXIT_INPUT)
    for line in plan.report():
        log.info("%s: speaker %s", Path(job.video).name, line)
    return dataclasses.replace(options, face_index=plan), None


def run_one(runner: JobRunner, job: Job, label: str, models: Any, options: Any, dtype: Any,
            progress: Optional[Callable[[str, int, int], None]] = None) -> Outcome:
    """Lip-sync one job; every expected failure becomes an Outcome (interrupts propagate). ``progress`` (stage,
    done, total) replaces the progress bars (a batch worker reports to its driver instead)."""
    from .pipeline.face_report import NoFaceError
    from .pipeline.runner import lipsync_file

    audio, failed, cleanup = prepare_audio(runner, job)  # --fix-offset: shifted to the lips
    if failed is None and options.face_index == "speaker":  # --face-index speaker: this video's per-shot choice
        options, failed = speaker_options(runner, job, audio, options)
    if failed is not None:
        cleanup()
        return failed
    progress = Progress(not runner.args.quiet and progress is None, label, also=progress)
    try:
        report = lipsync_file(models, models.vae, job.video, audio, job.output, options, device=runner.device,
                              dtype=dtype, progress=progress, sync_models=getattr(runner, "sync_models", None),
                              shards=getattr(runner, "shards", None))
    except NoFaceError as exc:
        return Outcome("failed", f"{exc} (--require-face: nothing was written)", EXIT_NO_FACE)
    except (OSError, ValueError) as exc:
        return Outcome("failed", str(exc), EXIT_INPUT)
    except RuntimeError as exc:
        return Outcome("failed", str(exc), EXIT_ERROR)
    finally:
        progress.close()
        cleanup()
    runner.remember(job, report, dict(models.files))
    from .cli_gate import log_cuts

    log_cuts(runner, job, report)
    return Outcome("no_face" if report.no_face else "done", report.summary(), report=report)


def run_jobs(args: argparse.Namespace, jobs: list[Job], device: Any) -> int:
    """Check every job, load the models once (only when a job is left to do), run them and report each."""
    import torch

    runner = JobRunner(args, jobs, device)
    try:
        if args.batch:
            runner.open_manifest()
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    todo, failed, stopped = runner.triage_all()
    if stopped is not None:
        return stopped.exit_code
    if not todo:
        return finish(runner, failed)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    from .cli import DEMO_IMAGE

    if not args.batch and jobs[0].video == str(DEMO_IMAGE):
        log.info("No inputs given: running the demo (%s + %s) -> %s", Path(jobs[0].video).name,
                 Path(jobs[0].audio).name, jobs[0].output)

    from .distributed.worker import BatchWorker, WorkerSetupError

    worker = BatchWorker(args, device=str(device))
    worker.runner = runner  # this run's checks, manifest and cache
    try:
        worker.setup()  # the models (and the sync gate's) loaded once, compiled with --compile
    except WorkerSetupError as exc:
        log.error("%s", exc)
        return exc.exit_code
    models, options = worker.models, worker.options
    runner.shards = None
    if getattr(args, "devices", None):  # --devices: a worker per device generates, this process streams the rest
        from .distributed.shard_cli import start_shards

        try:
            runner.shards = start_shards(args, models, runner.dtype, options)
        except Exception as exc:  # Ray could not start, or a worker could not load its models
            log.error("could not start the --devices workers: %s", exc)
            return EXIT_ERROR
    try:
        for n, job in enumerate(todo, 1):
            label = f"[{n}/{len(todo)}] {Path(job.video).name}"
            try:
                outcome = run_one(runner, job, label, models, worker.options_for(job), runner.dtype)
            except KeyboardInterrupt as exc:
                log.error("interrupted%s", f" ({exc})" if str(exc) else "")
                return getattr(exc, "exit_code", EXIT_INTERRUPTED)
            runner.record(job, outcome)
            failed += outcome.status == "failed"
            if not args.batch and outcome.status == "failed":
                return outcome.exit_code
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if runner.shards is not None:
            runner.shards.close()
    return finish(runner, failed)


def finish(runner: JobRunner, failed: int) -> int:
    """The batch's closing line and the exit code."""
    jobs = runner.jobs
    if runner.manifest is not None:
        counts = ", ".join(f"{n} {status}" for status, n in runner.manifest.counts().items() if n)
        say(f"batch: {len(jobs)} job(s): {counts or 'none'}; manifest {runner.manifest.path}")
    if failed:
        log.error("%d of %d jobs failed", failed, len(jobs))
        return EXIT_BATCH if runner.args.batch else EXIT_ERROR
    if jobs and runner.args.batch and all(e.status in ("exists", "cached") for e in runner.manifest.entries):
        log.info("nothing to do: every output exists (pass --overwrite to redo them)")
    return EXIT_OK
