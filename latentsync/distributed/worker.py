"""One batch worker: loads the models once (at its first job), then lip-syncs job after job and says how far it is.

The same object runs in the driver's process (``latentsync batch`` without ``--ray``) and as a Ray actor (one per
GPU): it holds no Ray code. It wraps the command line's own job loop pieces (``cli_runner``), so a job in a batch
is exactly the job ``latentsync --video --audio`` runs with the same options.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..cli_jobs import Job, job_args

log = logging.getLogger("latentsync")


class WorkerSetupError(RuntimeError):
    """The worker cannot load its models (files missing, unreadable): every job would fail the same way."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class JobCancelled(BaseException):
    """The driver asked the worker to stop its job (Ctrl-C there): raised at the job's next progress report, so the
    writer removes its partial file as on Ctrl-C. A BaseException: no ``except Exception`` turns it into a result."""


@dataclass
class JobResult:
    """How a job ended on a worker: a manifest status, the message, and what it took (plain data: crosses Ray)."""

    status: str
    message: str
    exit_code: int
    frames: Optional[int] = None
    face_frames: Optional[int] = None
    seconds: Optional[float] = None
    load_seconds: float = 0.0  # models loaded for this job (the worker's first)
    gate: list = field(default_factory=list)  # the sync gate's segments (JSON-ready), when --min-sync is on
    key: Optional[str] = None  # the job cache's key (inputs' content, models, result-changing options)
    sync: Optional[dict] = None  # the output's SyncNet score (--score): confidence, distance, offset or why none
    worker: str = ""

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


class BatchWorker:
    """Lip-syncs jobs with the run's options on one device; ``progress()`` may be called from another thread."""

    def __init__(self, args: argparse.Namespace, device: Optional[str] = None):
        self.args = args
        self.device_name = device or args.device
        self.models: Any = None
        self.options: Any = None
        self.runner: Any = None
        self._state: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def info(self) -> dict[str, Any]:
        """Where this worker runs: host, process id, device."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "device": self.device_name,
                "name": f"{socket.gethostname()}:{os.getpid()}"}

    def progress(self) -> dict[str, Any]:
        """The job in hand and its stage: ``{"job", "stage", "done", "total"}`` (empty when idle)."""
        with self._lock:
            return dict(self._state)

    def cancel(self) -> None:
        """Stop the job in hand at its next progress report (called from another thread, e.g. by the driver)."""
        self._cancel.set()

    def _report(self, stage: str, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise JobCancelled("stopped by the batch's driver")
        with self._lock:
            self._state.update(stage=stage, done=done, total=total)

    def job_runner(self) -> Any:
        """The command line's JobRunner on this worker's device (cheap: no model is loaded)."""
        if self.runner is None:
            from ..cli_checks import UsageError, resolve_device
            from ..cli_runner import JobRunner
            from ..exit_codes import EXIT_USAGE

            try:
                device = resolve_device(self.device_name)
            except UsageError as exc:
                raise WorkerSetupError(f"{self.info()['name']}: {exc}", EXIT_USAGE) from None
            self.runner = JobRunner(self.args, [], device)
        return self.runner

    def setup(self) -> float:
        """Load the models (and the sync gate's) once; returns the seconds it took. Raises WorkerSetupError."""
        if self.models is not None:
            return 0.0
        from ..cli_gate import load_gate_models
        from ..cli_runner import load_everything, run_options
        from ..exit_codes import EXIT_ERROR, EXIT_MODELS
        from ..model_files import ModelFilesMissing

        start = time.perf_counter()
        runner = self.job_runner()
        failed = load_gate_models(runner)
        if failed is None and getattr(self.args, "score", False) and getattr(runner, "sync_models", None) is None:
            from ..metrics.commands import load_sync_models_logged

            runner.sync_models, failed = load_sync_models_logged(runner.root, runner.device, prefix="--score: ",
                                                                 allow_download=not self.args.no_download)
        if failed is not None:
            raise WorkerSetupError("SyncNet files for --min-sync/--score are missing or unreadable (see the log)",
                                   failed)
        try:
            models = load_everything(self.args, runner.device, runner.dtype)
        except ModelFilesMissing as exc:
            raise WorkerSetupError(str(exc), EXIT_MODELS) from None
        except (OSError, ValueError) as exc:
            raise WorkerSetupError(f"could not load the models: {exc}", EXIT_MODELS) from None
        except ImportError as exc:
            raise WorkerSetupError(str(exc), EXIT_ERROR) from None
        self.options = run_options(self.args, models, runner.device)
        if self.args.compile:
            from ..pipeline.compiled import maybe_compile

            models.unet = maybe_compile(models.unet, True, device=runner.device,
                                        frames=self.options.sampler.chunk_frames,
                                        fixed_batch=self.options.sampler.batch_chunks)
        self.models = models
        return time.perf_counter() - start

    def options_for(self, job: Job) -> Any:
        """The runner's options for ``job``: the run's, with the job's own (a CSV/JSONL batch) applied."""
        if not job.options:
            return self.options
        from ..cli_runner import run_options

        return run_options(job_args(self.args, job), self.models, self.runner.device)

    def run(self, job: Job, label: str = "", bars: bool = False) -> JobResult:
        """Lip-sync one job: an identical earlier job's output from the job cache, else the models (loaded at the
        worker's first job) run it. A bad job becomes a failed result; WorkerSetupError when the models can't load.
        ``bars``: progress bars on this process's stderr (the local runner) instead of ``progress()`` reports."""
        from ..cli_runner import run_one

        self._cancel.clear()
        runner = self.job_runner()
        key = runner.key(job)
        cached = runner.from_cache(job)
        if cached is not None:
            return JobResult(cached.status, cached.message, cached.exit_code, key=key, worker=self.info()["name"])
        with self._lock:
            self._state = {"job": job.video, "stage": "load" if self.models is None else "start", "done": 0,
                           "total": 0}
        try:
            load_seconds = self.setup()
            outcome = run_one(runner, job, label or Path(job.video).name, self.models, self.options_for(job),
                              runner.dtype,
                              progress=None if bars else self._report)
        finally:
            with self._lock:
                self._state = {}
            if runner.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
        report = outcome.report
        sync = self.score(job) if report is not None and getattr(self.args, "score", False) else None
        return JobResult(
            status=outcome.status, message=outcome.message, exit_code=outcome.exit_code,
            frames=None if report is None else report.frames,
            face_frames=None if report is None else report.face_frames,
            seconds=None if report is None else round(report.seconds, 3), load_seconds=round(load_seconds, 3),
            gate=[] if report is None else [segment.as_dict() for segment in report.gate], key=key, sync=sync,
            worker=self.info()["name"])

    def score(self, job: Job) -> dict:
        """The written output's SyncNet score against its own audio track (``latentsync score``'s numbers)."""
        from ..metrics.media import read_clip
        from ..metrics.score import score_clip

        with self._lock:
            self._state = {"job": job.video, "stage": "score", "done": 0, "total": 0}
        try:
            clip = read_clip(job.output, None)
            result = score_clip(clip.frames, clip.wav16k, clip.fps, self.runner.sync_models)
        except (OSError, ValueError) as exc:
            return {"scorable": False, "reason": f"could not read the output: {exc}"}
        finally:
            with self._lock:
                self._state = {}
        record = result.as_dict()
        return {k: record[k] for k in ("scorable", "reason", "report", "confidence", "distance", "offset")}
