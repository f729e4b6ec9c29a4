"""Which model files LatentSync needs, where they come from, and fetching the missing ones.

Files are looked up in the user's models folders; a missing file is downloaded from its official Hugging Face
repository only when the caller allows it (the ComfyUI loader node or the CLI, never at import). Offline, or with
downloads off, one :class:`ModelFilesMissing` message lists every missing file, its source and where to put it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    """One downloadable file: its Hugging Face source and where it lives under a models folder."""

    key: str
    repo_id: str
    filename: str  # path inside the repo
    subdir: str  # destination relative to the models root (e.g. "latentsync/1.6")
    revision: str = "main"
    sha256: Optional[str] = None
    size: Optional[int] = None
    note: str = ""
    local_name: Optional[str] = None  # file name on disk when it differs from the repo's

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def dest_name(self) -> str:
        return self.local_name or os.path.basename(self.filename)

    def dest(self, models_root: str) -> str:
        return os.path.join(models_root, self.subdir, self.dest_name)


# Official sources. Revisions and checksums could not be read from the hub on the machines this pack is built on;
# set `revision`/`sha256` here once known and every download is pinned and verified.
UNET_FILES = {
    "1.5": ModelFile("unet-1.5", "ByteDance/LatentSync-1.5", "latentsync_unet.pt", "latentsync/1.5",
                     note="LatentSync 1.5 U-Net (256 px), ~5 GB"),
    "1.6": ModelFile("unet-1.6", "ByteDance/LatentSync-1.6", "latentsync_unet.pt", "latentsync/1.6",
                     note="LatentSync 1.6 U-Net (512 px), ~5 GB"),
}
WHISPER_TINY = ModelFile("whisper-tiny", "ByteDance/LatentSync-1.6", "whisper/tiny.pt", "latentsync/whisper",
                         note="Whisper tiny audio encoder, ~75 MB")
VAE_FT_MSE = ModelFile("vae-ft-mse", "stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors", "vae",
                       note="sd-vae-ft-mse (diffusers format), ~335 MB; ComfyUI's VAELoader reads it as is",
                       local_name="sd-vae-ft-mse.safetensors")


class ModelFilesMissing(FileNotFoundError):
    """Model files are missing and could not (or may not) be downloaded; the message says what to put where."""

    def __init__(self, missing: Sequence[tuple[ModelFile, str]], reason: str = ""):
        self.missing = list(missing)
        lines = [f"LatentSync model files are missing{': ' + reason if reason else ''}."]
        lines.append("Put each file at the path shown (or allow downloads):")
        for spec, dest in self.missing:
            lines.append(f"  - {dest}\n      from {spec.url}  ({spec.note or spec.key})")
        super().__init__("\n".join(lines))


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def downloads_disabled() -> bool:
    """True when the environment asks huggingface_hub to stay offline."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def download(spec: ModelFile, models_root: str) -> str:
    """Download one file into its place under ``models_root`` (resumable, progress on stderr) and verify it."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ModelFilesMissing([(spec, spec.dest(models_root))], "huggingface_hub is not installed (pip install huggingface_hub)") from exc
    dest = spec.dest(models_root)
    target_dir = os.path.join(models_root, spec.subdir)
    os.makedirs(target_dir, exist_ok=True)
    log.info("Downloading %s (%s) to %s", spec.url, spec.note, dest)
    # hf_hub_download keeps the repo's sub-path under local_dir; download into a staging dir, then move.
    staging = os.path.join(target_dir, ".download")
    path = hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, local_dir=staging)
    problem = None
    if spec.size is not None and os.path.getsize(path) != spec.size:
        problem = f"size {os.path.getsize(path)} != expected {spec.size} (incomplete download)"
    elif spec.sha256 is not None and sha256_of(path) != spec.sha256:
        problem = f"sha256 differs from the expected {spec.sha256}"
    if problem:
        os.remove(path)  # our own staging copy, never a user's file
        raise OSError(f"{spec.url}: {problem}; the file was discarded, try again")
    os.replace(path, dest)
    return dest


def ensure_files(
    specs: Iterable[ModelFile],
    models_root: str,
    *,
    allow_download: bool = True,
    existing: Optional[dict[str, str]] = None,
) -> dict[str, str]:
    """Return {key: path} for every spec, downloading missing files when allowed.

    ``existing`` maps keys to paths the caller already resolved (e.g. a file the user chose in a dropdown).
    """
    existing = dict(existing or {})
    resolved: dict[str, str] = {}
    missing: list[tuple[ModelFile, str]] = []
    for spec in specs:
        path = existing.get(spec.key) or spec.dest(models_root)
        if os.path.isfile(path):
            resolved[spec.key] = path
        else:
            missing.append((spec, path))
    if not missing:
        return resolved
    if not allow_download:
        raise ModelFilesMissing(missing, "downloads are turned off")
    if downloads_disabled():
        raise ModelFilesMissing(missing, "HF_HUB_OFFLINE is set")
    failed: list[tuple[ModelFile, str]] = []
    errors: list[str] = []
    for spec, path in missing:
        try:
            resolved[spec.key] = download(spec, models_root)
        except ModelFilesMissing:
            raise
        except Exception as exc:  # network errors come in many types (requests, httpx, OSError, hub errors)
            failed.append((spec, path))
            errors.append(f"{spec.dest_name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if failed:
        raise ModelFilesMissing(failed, "the download failed (offline?) — " + "; ".join(errors))
    return resolved


def insightface_files() -> list[ModelFile]:
    """buffalo_l's detector and landmark files (upstream's face detector) as downloadable specs."""
    from .face.detectors.insightface_onnx import INSIGHTFACE_FILES, LICENSE_NOTE, MODEL_SUBDIRS

    return [
        ModelFile(f"insightface-{f.name}", f.repo_id or "", f.repo_path or f.name, MODEL_SUBDIRS[0],
                  revision=f.revision or "main", sha256=f.sha256, size=f.size, note=LICENSE_NOTE)
        for f in INSIGHTFACE_FILES
    ]


def ensure_detector_files(detector: str, models_dirs: Sequence[str], *, allow_download: bool) -> None:
    """For ``detector == "insightface"``, make sure its files exist under one of ``models_dirs`` (download into
    the first when allowed). "auto" never downloads: it uses insightface only when the files are already there."""
    if detector != "insightface" or not models_dirs:
        return
    from .face.detectors.insightface_onnx import find_insightface_files

    try:
        find_insightface_files(models_dirs)
    except Exception:  # DetectorUnavailableError: not found anywhere
        ensure_files(insightface_files(), models_dirs[0], allow_download=allow_download)
