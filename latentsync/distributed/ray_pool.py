"""Jobs over a Ray cluster: one long-lived :class:`BatchWorker` actor per GPU (models loaded once per actor), a job
at a time each; a job whose worker dies is retried on a fresh worker (bounded), then reported as failed.

Ray is imported only here, when ``--ray`` is asked for. Jobs are plain data (paths and options), so the files must
be where every node can read and write them (one machine, or a shared file system).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..cli_jobs import Job
from .worker import BatchWorker, JobResult, WorkerSetupError

log = logging.getLogger("latentsync")

EventCallback = Callable[..., None]
PROGRESS_EVERY_S = 1.0


def import_ray() -> Any:
    """The ray module, or ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError('--ray needs Ray: pip install "latentsync-nodes[ray]" (or pip install "ray>=2.40")') from None
    return ray


def _package_root() -> str:
    """The folder holding the ``latentsync`` package (workers must import the same code)."""
    return str(Path(__file__).resolve().parents[2])


@dataclass
class _Slot:
    """A worker actor and what it is doing."""

    actor: Any
    info: dict
    job: Optional[Job] = None
    attempt: int = 0
    ref: Any = None


class RayPool:
    """Runs jobs on ``workers`` Ray actors; ``run`` yields each job's result as it finishes."""

    def __init__(self, args: argparse.Namespace, *, address: Optional[str], workers: Optional[int],
                 gpus_per_worker: Optional[float], retries: int, on_event: Optional[EventCallback] = None):
        self.args, self.address, self.retries = args, address, retries
        self.requested_workers, self.requested_gpus = workers, gpus_per_worker
        self.on_event = on_event or (lambda kind, **data: None)
        self.ray: Any = None
        self.started_ray = False
        self.slots: list[_Slot] = []

    def start(self) -> None:
        """Connect to the cluster (``address``), or start a local one; work out the workers' size and count."""
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            path = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)
            ray.init(address=self.address, include_dashboard=False, log_to_driver=not self.args.quiet,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
            self.started_ray = True
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.gpus_per_worker = self.requested_gpus if self.requested_gpus is not None else (1.0 if gpus else 0.0)
        if self.requested_workers:
            self.workers = self.requested_workers
        else:
            self.workers = max(1, int(gpus // self.gpus_per_worker)) if self.gpus_per_worker else 1
        log.info("Ray cluster: %g GPU(s), %g CPU(s); %d worker(s) with %g GPU each", gpus,
                 ray.cluster_resources().get("CPU", 0), self.workers, self.gpus_per_worker)

    def _new_slot(self) -> _Slot:
        ray = self.ray
        device = "cuda" if self.gpus_per_worker else ("cpu" if self.args.device == "auto" else self.args.device)
        actor_class = ray.remote(BatchWorker).options(num_gpus=self.gpus_per_worker, num_cpus=1, max_concurrency=2,
                                                      max_restarts=0)
        actor = actor_class.remote(self.args, device)
        info = ray.get(actor.info.remote())
        self.on_event("worker_started", worker=info)
        return _Slot(actor, info)

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, JobResult]]:
        """Every job's result, in the order they finish; WorkerSetupError stops the batch (no worker can run)."""
        ray = self.ray
        queue = collections.deque((job, 1) for job in jobs)
        self.slots = [self._new_slot() for _ in range(min(self.workers, len(jobs)))]
        last_poll = 0.0
        while queue or any(s.ref is not None for s in self.slots):
            for slot in self.slots:
                if slot.ref is None and queue:
                    slot.job, slot.attempt = queue.popleft()
                    slot.ref = slot.actor.run.remote(slot.job)
                    self.on_event("job_started", job=slot.job, worker=slot.info, attempt=slot.attempt)
            busy = [s for s in self.slots if s.ref is not None]
            ready, _ = ray.wait([s.ref for s in busy], num_returns=1, timeout=PROGRESS_EVERY_S / 2)
            for slot in [s for s in busy if s.ref in ready]:
                job, attempt, ref = slot.job, slot.attempt, slot.ref
                slot.ref = slot.job = None
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the worker process died (killed, OOM, crash)
                    yield from self._worker_died(slot, job, attempt, exc, queue)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    if isinstance(cause, WorkerSetupError):
                        raise WorkerSetupError(str(cause).splitlines()[-1], cause.exit_code) from None
                    result = JobResult("failed", f"unexpected error on {slot.info['name']}: {exc}", 1,
                                       worker=slot.info["name"])
                yield job, result
            if time.monotonic() - last_poll >= PROGRESS_EVERY_S:
                last_poll = time.monotonic()
                self._poll_progress()

    def _worker_died(self, slot: _Slot, job: Job, attempt: int, exc: Exception,
                     queue: collections.deque) -> Iterator[tuple[Job, JobResult]]:
        """Replace the dead worker; the job goes back to the front of the queue, or fails after ``retries``."""
        name = slot.info["name"]
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.on_event("worker_died", job=job, worker=slot.info, attempt=attempt, reason=reason)
        replacement = self._new_slot()
        slot.actor, slot.info = replacement.actor, replacement.info
        if attempt <= self.retries:
            log.warning("%s: worker %s died (%s); retrying the job (attempt %d of %d)", Path(job.video).name, name,
                        reason, attempt + 1, self.retries + 1)
            queue.appendleft((job, attempt + 1))
            return
        yield job, JobResult("failed", f"its worker died {attempt} time(s) (last on {name}: {reason}); not retried "
                             f"again (--retries {self.retries})", 1, worker=name)

    def _poll_progress(self) -> None:
        """Ask each busy worker how far its job is (a failed ask is skipped: the worker may be dying)."""
        busy = [s for s in self.slots if s.ref is not None]
        if not busy:
            return
        refs = [s.actor.progress.remote() for s in busy]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=PROGRESS_EVERY_S)
        for slot, ref in zip(busy, refs):
            if ref in ready:
                try:
                    state = self.ray.get(ref)
                except Exception:  # noqa: BLE001 - a dying worker: its death is handled where its job's result is
                    continue
                if state:
                    self.on_event("progress", job=slot.job, worker=slot.info, state=state)

    def cancel(self, grace_s: float = 20.0) -> None:
        """Ask every busy worker to stop its job (its partial output is removed) and wait up to ``grace_s``."""
        busy = [s for s in self.slots if s.ref is not None]
        for slot in busy:
            slot.actor.cancel.remote()
        if busy:
            self.ray.wait([s.ref for s in busy], num_returns=len(busy), timeout=grace_s)

    def stop(self) -> None:
        """Kill the workers and, when this process started the cluster, shut it down."""
        for slot in self.slots:
            try:
                self.ray.kill(slot.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.slots = []
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False
