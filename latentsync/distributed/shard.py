"""One long video across the devices of a host: one Ray actor per device generates windows, the driver streams.

The driver (``pipeline.runner.lipsync_file`` given a :class:`ShardPool`) keeps decoding, face tracking, alignment,
the audio windows, compositing and encoding, window by window as in a single-device run. Each window's aligned
faces (uint8) and audio windows go through Ray's object store to the least busy actor, which runs
``stages.generate_chunks`` on exactly that window (the runner's unit of work, so the chunks per U-Net call and the
VAE batches are the single run's) and returns the generated faces; the driver gathers them in order. The noise of
every chunk derives from the plan's seed, so the frames equal the single-device run's bit for bit on the same
kind of device (see docs/distributed.md).

Ray is imported only when a pool starts; without it :func:`require_ray` names the extra to install.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from .shard_worker import ChunkWorker, WindowResult, dtype_name, to_wire

log = logging.getLogger("latentsync")

RAY_MISSING = 'sharding a video over devices (--devices) needs Ray: pip install "latentsync-nodes[ray]"'
NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"  # the actor picks its GPU by index, Ray still counts it


def require_ray() -> Any:
    """The ``ray`` module, or ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def _package_root() -> str:
    """The folder that holds the ``latentsync`` package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class ShardStats:
    """What a sharded video cost: windows, worker compute, object-store transfers and the driver's waits."""

    windows: int = 0
    compute_s: float = 0.0  # encode + sample + decode on the workers (sum over workers)
    put_s: float = 0.0  # driver: inputs into the object store
    fetch_s: float = 0.0  # workers: inputs out of the object store
    get_s: float = 0.0  # driver: generated faces out of the object store
    wait_s: float = 0.0  # driver: blocked until a window it needed was generated
    bytes_in: int = 0
    bytes_out: int = 0
    per_worker: Counter = field(default_factory=Counter)

    @property
    def transfer_s(self) -> float:
        return self.put_s + self.fetch_s + self.get_s

    def line(self) -> str:
        """One log line: windows per worker, compute, transfers (time, share of compute, bytes), driver waits."""
        share = 100.0 * self.transfer_s / self.compute_s if self.compute_s else 0.0
        workers = ", ".join(f"{name}: {n}" for name, n in sorted(self.per_worker.items()))
        return (f"sharded {self.windows} window(s) over {len(self.per_worker)} worker(s) ({workers}); generate "
                f"{self.compute_s:.2f} s on the workers; transfers {self.transfer_s:.3f} s ({share:.1f} % of "
                f"generate: put {self.put_s:.3f}, fetch {self.fetch_s:.3f}, get {self.get_s:.3f}), "
                f"{(self.bytes_in + self.bytes_out) / 2**20:.1f} MiB; driver waited {self.wait_s:.2f} s")


@dataclass
class ShardJob:
    """A window handed to a worker and not yet gathered."""

    ref: Any
    worker: int
    start: int
    stop: int


class ShardPool:
    """Ray actors, one per device, holding the models; windows go to the least busy one and come back in order."""

    def __init__(self, devices: Sequence[str], files: Mapping[str, str], *, version: Optional[str],
                 dtype: torch.dtype, compile_shape: Optional[tuple[int, int]] = None, ahead: int = 2):
        before = dict(os.environ)  # importing ray and ray.init set variables; close() puts them back
        ray = require_ray()
        self.devices = list(devices)
        self.ahead = ahead  # windows queued per worker: one running, the next one's inputs already there
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            cuda = any(d.startswith("cuda") for d in self.devices)
            # The workers import this package from where the driver has it (a checkout is not installed).
            path = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, len(self.devices)),
                     num_gpus=torch.cuda.device_count() if cuda else 0, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=log.isEnabledFor(logging.INFO),
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        self._env_before = {k: before.get(k) for k in os.environ if os.environ[k] != before.get(k)}
        self._env_before.update({k: v for k, v in before.items() if k not in os.environ})
        started = time.perf_counter()
        try:
            self.actors = [self._actor(ray, device, files, version, dtype, compile_shape) for device in self.devices]
            ready = ray.get([a.ready.remote() for a in self.actors])
        except BaseException:
            self.close()
            raise
        self.names = [name for name, _ in ready]
        self.load_s = max(seconds for _, seconds in ready)  # the models load in parallel
        self.start_s = time.perf_counter() - started
        self._pending: dict[Any, int] = {}  # windows handed out and not yet done -> their worker
        self._assigned: Counter = Counter()  # windows handed to each worker so far (ties go to the least used)
        self.stats = ShardStats()
        self.last_stats = ShardStats()
        self._mask: Optional[tuple[torch.Tensor, Any]] = None
        log.info("sharding over %s: %d worker(s) ready in %.1f s (models loaded in %.1f s)",
                 ", ".join(self.devices), len(self.actors), self.start_s, self.load_s)

    @staticmethod
    def _actor(ray: Any, device: str, files: Mapping[str, str], version: Optional[str], dtype: torch.dtype,
               compile_shape: Optional[tuple[int, int]]) -> Any:
        """A worker actor on ``device``, on this host (CUDA: one GPU counted by Ray, the index chosen here)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        is_cuda = device.startswith("cuda")
        options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1 if is_cuda else 0, "scheduling_strategy": here,
                                   "max_concurrency": 1}
        if is_cuda:
            options["runtime_env"] = {"env_vars": {NOSET_CUDA: "1"}}
        worker_device = device if is_cuda else "cpu"
        return ray.remote(ChunkWorker).options(**options).remote(
            dict(files), version=version, device=worker_device, dtype=dtype_name(dtype), compile_shape=compile_shape)

    @property
    def depth(self) -> int:
        """Windows the driver keeps in flight before it gathers the oldest."""
        return self.ahead * len(self.actors)

    def submit(self, plan: Any, start: int, stop: int, faces: torch.Tensor, windows: Optional[torch.Tensor],
               mask: torch.Tensor, paste: torch.Tensor, *, vae_batch: int, dtype: torch.dtype) -> ShardJob:
        """Hand frames ``[start, stop)`` (whole chunks of ``plan``) to the least busy worker; returns at once."""
        import ray

        chunk = plan.options.chunk_frames
        first, last = start // chunk, -(-stop // chunk)
        began = time.perf_counter()
        if self._mask is None or self._mask[0] is not mask:
            self._mask = (mask, ray.put(to_wire(mask)))
        faces_np = to_wire(faces)
        # Audio windows cross in the workers' dtype when numpy has it (the sampler casts them to it anyway).
        windows_np = None
        if windows is not None:
            windows_np = to_wire(windows.to(dtype) if dtype == torch.float16 else windows)
        inputs = [ray.put(faces_np), None if windows_np is None else ray.put(windows_np), self._mask[1],
                  to_wire(torch.as_tensor(paste, dtype=torch.bool))]
        self.stats.put_s += time.perf_counter() - began
        self.stats.bytes_in += faces_np.nbytes + (0 if windows_np is None else windows_np.nbytes)
        worker = self._least_busy()
        ref = self.actors[worker].generate.remote(plan, first, last, inputs, int(vae_batch))
        self._pending[ref] = worker
        return ShardJob(ref, worker, start, stop)

    def _least_busy(self) -> int:
        """The worker with the fewest windows not yet done, and of those the one handed the fewest so far (idle
        workers take turns); windows of a failed video, never gathered, count only until their worker finishes them."""
        import ray

        if self._pending:
            done, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0, fetch_local=False)
            for ref in done:
                del self._pending[ref]
        busy = Counter(self._pending.values())
        worker = min(range(len(self.actors)), key=lambda i: (busy[i], self._assigned[i], i))
        self._assigned[worker] += 1
        return worker

    def result(self, job: ShardJob) -> torch.Tensor:
        """The generated faces of ``job`` (CPU, [-1, 1]); waits for it."""
        import ray

        began = time.perf_counter()
        ray.wait([job.ref], fetch_local=False)
        waited = time.perf_counter()
        try:
            out: WindowResult = ray.get(job.ref)
        except ray.exceptions.RayError as exc:  # the worker died or raised (out of memory, ...): the run fails
            raise RuntimeError(f"the {self.devices[job.worker]} worker failed on frames {job.start}-{job.stop - 1}: "
                               f"{exc}") from None
        faces = torch.from_numpy(np.array(out.faces))
        s = self.stats
        s.wait_s += waited - began
        s.get_s += time.perf_counter() - waited
        s.compute_s += out.compute_s
        s.fetch_s += out.fetch_s
        s.bytes_out += out.faces.nbytes
        s.windows += 1
        s.per_worker[out.worker] += 1
        return faces

    def take_stats(self) -> ShardStats:
        """This video's statistics (kept as ``last_stats``); the next video starts from zero."""
        self.last_stats, self.stats = self.stats, ShardStats()
        return self.last_stats

    def close(self) -> None:
        """Stop the actors (and Ray, when this pool started it); the process environment is as before."""
        try:
            import ray
        except ImportError:
            return
        for actor in getattr(self, "actors", []):
            ray.kill(actor)
        self.actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        for key, value in self._env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._env_before = {}

    def __enter__(self) -> "ShardPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
