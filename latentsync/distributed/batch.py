"""``latentsync batch JOBS [--ray [ADDRESS]]``: many lip-sync jobs, in this process or over a Ray cluster.

The driver checks every job first (inputs, outputs, an output that exists is a finished job and is skipped), hands
the rest to the workers (:class:`BatchWorker`: in this process, or one Ray actor per GPU), and writes each result
into the batch manifest as it arrives (status, message, cache key, worker, attempts, timings, the sync gate's
segments). Outputs are written under hidden partial names and renamed when complete, so a stopped batch keeps every
finished output and leaves no half-written one under a final name; a rerun does only what is left.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..batch_manifest import ManifestEntry
from ..cli_jobs import Job
from ..exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from .worker import BatchWorker, JobResult, WorkerSetupError

log = logging.getLogger("latentsync")

EventCallback = Callable[..., None]


class LocalPool:
    """The jobs one after another in this process, with the usual progress bars."""

    def __init__(self, args: argparse.Namespace):
        self.worker = BatchWorker(args)

    def start(self) -> None:
        """Nothing to start: the models load at the first job that needs them."""

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, JobResult]]:
        """Each job's result, in order."""
        for n, job in enumerate(jobs, 1):
            yield job, self.worker.run(job, label=f"[{n}/{len(jobs)}] {Path(job.video).name}", bars=True)

    def cancel(self) -> None:
        """Nothing to do: Ctrl-C reached the job itself in this process."""

    def stop(self) -> None:
        """Nothing to stop."""


class JobsBar:
    """One line for the whole batch: jobs finished of all, and what each worker is doing (from its reports)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.workers: dict[str, str] = {}
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="batch", unit="job", dynamic_ncols=True)

    def event(self, kind: str, **data: Any) -> None:
        """Follow the pool's events (job started, progress, worker died)."""
        if self.bar is None:
            return
        name = data.get("worker", {}).get("name", "")
        if kind == "job_started":
            self.workers[name] = f"{Path(data['job'].video).name} start"
        elif kind == "progress":
            state = data["state"]
            done = f" {state['done']}/{state['total']}" if state.get("total") else ""
            self.workers[name] = f"{Path(state['job']).name} {state['stage']}{done}"
        elif kind == "worker_died":
            self.workers.pop(name, None)
        self.bar.set_postfix_str(" | ".join(self.workers.values()), refresh=True)

    def finished(self, worker: str) -> None:
        """A job ended."""
        if self.bar is not None:
            self.workers.pop(worker, None)
            self.bar.update(1)

    def close(self) -> None:
        """Close the line."""
        if self.bar is not None:
            self.bar.close()


def _entry(job: Job, result: JobResult, attempts: int) -> ManifestEntry:
    return ManifestEntry(video=job.video, audio=job.audio, output=job.output, status=result.status,
                         message=result.message, frames=result.frames, face_frames=result.face_frames,
                         seconds=result.seconds, key=result.key, worker=result.worker or None, attempts=attempts,
                         load_seconds=result.load_seconds or None, gate=result.gate or None, sync=result.sync,
                         options=dict(job.options) or None)


def run_batch(args: argparse.Namespace, jobs: list[Job], *, use_ray: bool = False, address: Optional[str] = None,
              workers: Optional[int] = None, gpus_per_worker: Optional[float] = None, retries: int = 2,
              on_event: Optional[EventCallback] = None) -> int:
    """Run a batch and return the command's exit code (manifest and one line per job as they finish)."""
    import torch

    from ..cli_checks import UsageError
    from ..cli_runner import JobRunner, finish, say

    # The driver only checks and records; the job cache is consulted on the worker (its device and dtype are
    # part of the key).
    driver = JobRunner(copy.copy(args), jobs, torch.device("cpu"))
    driver.cache = None
    try:
        driver.open_manifest()
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    todo, failed, _ = driver.triage_all()  # a batch: every job triaged
    if not todo:
        return finish(driver, failed)
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)

    attempts: dict[Job, int] = {}
    bar = JobsBar(len(todo), enabled=use_ray and not args.quiet)  # locally, each job draws its own bars

    def events(kind: str, **data: Any) -> None:
        if kind == "job_started":
            attempts[data["job"]] = data["attempt"]
        bar.event(kind, **data)
        if on_event is not None:
            on_event(kind, **data)

    if use_ray:
        from .ray_pool import RayPool

        pool: Any = RayPool(args, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                            retries=retries, on_event=events)
    else:
        pool = LocalPool(args)
    start = time.monotonic()
    done = 0
    try:
        pool.start()
        for job, result in pool.run(todo):
            done += 1
            bar.finished(result.worker)
            if result.status == "failed":
                log.error("%s failed: %s", Path(job.video).name, result.message)
                failed += 1
            else:
                say(result.message)
            driver.manifest.add(_entry(job, result, attempts.get(job, 1)))
    except WorkerSetupError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        pool.cancel()
        log.error("interrupted%s: %d of %d job(s) finished and kept; a rerun does the rest", f" ({exc})"
                  if str(exc) else "", done, len(todo))
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    finally:
        bar.close()
        pool.stop()
    log.info("batch: %d job(s) in %.1f s", len(todo), time.monotonic() - start)
    return finish(driver, failed)
