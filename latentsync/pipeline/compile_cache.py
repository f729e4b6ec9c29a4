"""Compiled U-Net and VAE kernels kept across processes, so a fresh process compiles in seconds, not minutes.

``torch.compile`` caches its work on disk only in a temporary folder, and the first compile of the full-size
U-Net takes about two minutes per resolution. After a compile, :class:`CompileArtifacts` saves PyTorch's
portable cache artifacts (``torch.compiler.save_cache_artifacts``: generated code, autotuning results, Triton
kernels) to one file per setup and graph; a later process loads them before compiling
(``torch.compiler.load_cache_artifacts``), so compiling becomes tracing plus cache hits.

Kept by default; ``LATENTSYNC_COMPILE_CACHE=off`` turns it off, any other value is the folder. The file name is a
hash of everything that makes kernels differ: the PyTorch, Triton and CUDA versions, the GPU
model and its compute capability, the model configuration, the dtype, the chunk shape, and the source of the
model code. Any change gives a new file and a full compile; an unusable or stale file is ignored (with a log
line), never fatal. Only files this module wrote are replaced, and only by an atomic rename. Like Inductor's own
cache in the temporary folder, the file holds code that PyTorch runs: the folder is created private to the user.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional

import torch

log = logging.getLogger(__name__)

ENV_DIR = "LATENTSYNC_COMPILE_CACHE"
_MODEL_SOURCES = ("attention.py", "layers.py", "motion.py", "unet.py", "unet_blocks.py", "unet_model.py")
_STORE_LOCK = threading.RLock()  # one graph's own artifact store at a time (the store is PyTorch's, per process)


def _own_artifact_store() -> ContextManager[None]:
    """PyTorch's artifact records set aside for a block and put back after it
    (``CacheArtifactManager.with_fresh_cache``, private, torch >= 2.8); else nothing, and saves hold everything
    recorded since the process started, as PyTorch's own save does."""
    try:
        from torch.compiler._cache import CacheArtifactManager

        return CacheArtifactManager.with_fresh_cache()
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


def default_cache_dir() -> Path:
    """``$LATENTSYNC_COMPILE_CACHE``, else the user's cache folder (``%LOCALAPPDATA%`` on Windows, else
    ``$XDG_CACHE_HOME`` or ``~/.cache``) + ``latentsync/compile``."""
    env = os.environ.get(ENV_DIR)
    if env and kernels_kept():
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "latentsync" / "compile"


def kernels_kept() -> bool:
    """False when the user turned keeping compiled kernels off ($LATENTSYNC_COMPILE_CACHE = off / 0 / false)."""
    return os.environ.get(ENV_DIR, "").strip().lower() not in ("off", "0", "false", "no", "none")


def package_version(package: str) -> str:
    """An installed distribution's version, or "absent"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _model_source_digest() -> str:
    models = Path(__file__).resolve().parents[1] / "models"
    digest = hashlib.sha256()
    for name in _MODEL_SOURCES:
        path = models / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


def setup_key(config: dict, *, device: torch.device | str, dtype: torch.dtype, frames: int, batch: int,
              own_code: bool = True) -> str:
    """A short hash naming one compile setup: versions, GPU, model config, dtype, chunk shape, model code (this
    package's U-Net sources when ``own_code``; for another library's model put its version in ``config``)."""
    device = torch.device(device)
    gpu: Any = None
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        gpu = [torch.cuda.get_device_name(index), list(torch.cuda.get_device_capability(index))]
    facts = {
        "torch": torch.__version__, "triton": package_version("triton"), "cuda": torch.version.cuda, "device": device.type,
        "gpu": gpu, "dtype": str(dtype), "frames": int(frames), "batch": int(batch), "config": config,
        "code": _model_source_digest() if own_code else None,
    }
    blob = json.dumps(facts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class CompileArtifacts:
    """One setup's artifact files, one per compiled graph: :meth:`load` before compiling, every call of a graph
    inside :meth:`first_run`, which saves the graph's file after its first run.

    One file per graph, because PyTorch's artifact format cannot hold two saves: each save returns everything since
    the process started, as one batch per save, and loading keeps only the last batch of each kind (torch 2.11,
    2.13: ``CacheArtifactManager.deserialize`` builds a dict). Saving after the full step and again after the
    DeepCache step therefore lost the full step's kernels (measured on an H100: a warm process recompiled it for
    98 s). A save's last batch is the graph just compiled, so each file holds its graph whatever PyTorch keeps.

    PyTorch also keeps every recorded artifact for the rest of the process, twice (the records and their serialised
    form): after a cold compile, the U-Net's and VAE's kernels (an H200 process that compiled cold peaked 0.43 GiB
    above one that loaded the files). :meth:`first_run` records into a store of the
    graph's own, saves it and drops it, leaving PyTorch's store as it was.
    """

    def __init__(self, directory: Path | str, key: str, kind: str = "unet") -> None:
        self.directory = Path(directory)
        self.key = key
        self.kind = kind  # the model, first in the file names (unet, vae)
        self.loaded_graphs: set[str] = set()
        self._ran: set[str] = set()  # graphs that have run in this process (see ran)
        self.loaded_info: list[Any] = []  # PyTorch's CacheInfo of each load / the last save (which keys they held)
        self.saved_info: Any = None

    @property
    def loaded(self) -> bool:
        return bool(self.loaded_graphs)

    def path(self, graph: str) -> Path:
        """The file of one graph (``full``, ``cached``, ...)."""
        return self.directory / f"{self.kind}-{self.key}-{graph}.bin"

    def files(self) -> list[Path]:
        """This setup's graph files present now."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{self.kind}-{self.key}-*.bin"))

    def load(self) -> bool:
        """Hot-load every saved graph into PyTorch's compile caches; False when none could be loaded."""
        prefix = f"{self.kind}-{self.key}-"
        for path in self.files():
            try:
                info = torch.compiler.load_cache_artifacts(path.read_bytes())
            except Exception as exc:  # a file from another PyTorch build, truncated, ...: that graph compiles
                log.warning("Ignoring the compiled-kernel cache %s (%s: %s).", path, type(exc).__name__, exc)
                continue
            if info is None:  # PyTorch logs why; say what it means
                log.warning("Ignoring the compiled-kernel cache %s: PyTorch could not read it; compiling it.", path)
                continue
            self.loaded_graphs.add(path.name[len(prefix):-len(".bin")])
            self.loaded_info.append(info)
            log.info("Loaded compiled %s kernels from %s.", self.kind, path)
        return self.loaded

    @contextlib.contextmanager
    def first_run(self, graph: str) -> Iterator[None]:
        """Around every call of ``graph``. Its first successful run in this process (a compile, or cache hits)
        records PyTorch's artifacts in a store of its own, saves them to the graph's file and drops them."""
        if graph in self._ran:
            yield
            return
        with _STORE_LOCK, _own_artifact_store():
            yield
            self._ran.add(graph)
            self.save(graph)

    def save(self, graph: str) -> Optional[Path]:
        """Write the artifacts of ``graph``, compiled just now (atomically); None when it came from a file or
        there is nothing to write."""
        if graph in self.loaded_graphs:
            return None
        target = self.path(graph)
        try:
            result = torch.compiler.save_cache_artifacts()
            if result is None:
                return None
            payload, self.saved_info = result
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.kind}-", suffix=".part", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except Exception as exc:  # a read-only or full disk must not fail the run
            log.warning("Could not save the compiled-kernel cache to %s (%s: %s).", target, type(exc).__name__, exc)
            return None
        log.info("Saved compiled %s kernels to %s (%.1f MB).", self.kind, target, len(payload) / 1e6)
        return target


def first_run_of(artifacts: Optional[CompileArtifacts], graph: str) -> ContextManager[None]:
    """Around each call of a compiled graph: ``artifacts.first_run(graph)``, or nothing where no kernels are kept."""
    return contextlib.nullcontext() if artifacts is None else artifacts.first_run(graph)


__all__ = ["CompileArtifacts", "first_run_of", "ENV_DIR", "default_cache_dir", "kernels_kept", "package_version", "setup_key"]
