"""Which model files LatentSync needs, where they come from, and fetching the missing ones.

Files are looked up in the user's models folders; a missing file is downloaded from its official Hugging Face
repository only when the caller allows it (the ComfyUI loader node or the CLI, never at import). Before any
download, one quick check says whether downloading can work at all (downloads off, an offline variable set, the
hub out of reach); when it cannot, one :class:`ModelFilesMissing` message lists every missing file, its source,
where to put it and the real cause, within seconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from . import hub

log = logging.getLogger(__name__)

GB, MB = 1000**3, 1000**2


@dataclass(frozen=True)
class ModelFile:
    """One downloadable file: its Hugging Face source and where it lives under a models folder."""

    key: str
    repo_id: str
    filename: str  # path inside the repo
    subdir: str  # destination relative to the models root (e.g. "latentsync/1.6")
    revision: str = "main"
    sha256: Optional[str] = None
    size: Optional[int] = None  # exact size in bytes, checked after a download when known
    note: str = ""
    local_name: Optional[str] = None  # file name on disk when it differs from the repo's
    aliases: tuple[str, ...] = ()  # other accepted paths, relative to ``subdir`` (read, never written)
    approx_bytes: Optional[int] = None  # for messages and download totals when the exact size is unknown

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def dest_name(self) -> str:
        return self.local_name or os.path.basename(self.filename)

    @property
    def name(self) -> str:
        """The file's name on disk (e.g. ``det_10g.onnx``)."""
        return self.dest_name

    def dest(self, models_root: str) -> str:
        """Where the file is written (and looked for first) under ``models_root``."""
        return os.path.join(models_root, self.subdir, self.dest_name)

    def candidates(self, models_root: str) -> list[str]:
        """Every accepted path under ``models_root``: the destination, then the aliases."""
        return [self.dest(models_root)] + [os.path.join(models_root, self.subdir, a) for a in self.aliases]

    def find(self, models_root: str) -> Optional[str]:
        """The first accepted path that exists under ``models_root``, or None."""
        return next((p for p in self.candidates(models_root) if os.path.isfile(p)), None)

    @property
    def expected_bytes(self) -> Optional[int]:
        return self.size or self.approx_bytes


def human_size(num: Optional[float]) -> str:
    """1234567 -> '1.2 MB' (decimal units, as download pages show them)."""
    if num is None:
        return "size unknown"
    for unit, scale in (("GB", GB), ("MB", MB), ("kB", 1000)):
        if num >= scale:
            return f"{num / scale:.1f} {unit}"
    return f"{int(num)} B"


# Official sources. Revisions and checksums could not be read from the hub on the machines this pack is built on;
# set `revision`/`sha256`/`size` here once known and every download is pinned and verified. Sizes are those of
# the float32 U-Net (1,267,944,644 elements), openai-whisper's tiny.pt and diffusers' sd-vae-ft-mse.
UNET_FILES = {
    "1.5": ModelFile("unet-1.5", "ByteDance/LatentSync-1.5", "latentsync_unet.pt", "latentsync/1.5",
                     note="LatentSync 1.5 U-Net (256 px)", approx_bytes=5_070_000_000),
    "1.6": ModelFile("unet-1.6", "ByteDance/LatentSync-1.6", "latentsync_unet.pt", "latentsync/1.6",
                     note="LatentSync 1.6 U-Net (512 px)", approx_bytes=5_070_000_000),
}
WHISPER_TINY = ModelFile("whisper-tiny", "ByteDance/LatentSync-1.6", "whisper/tiny.pt", "latentsync/whisper",
                         note="Whisper tiny audio encoder", approx_bytes=75_600_000)
VAE_FT_MSE = ModelFile("vae-ft-mse", "stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors", "vae",
                       note="sd-vae-ft-mse (diffusers format; ComfyUI's VAELoader reads it as is)",
                       local_name="sd-vae-ft-mse.safetensors", approx_bytes=334_600_000,
                       aliases=("sd-vae-ft-mse/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"))


COMFY_FOLDER = "latentsync"  # the ComfyUI model folder the pack registers (models/latentsync)


def name_in_folder(spec: ModelFile, folder: str = COMFY_FOLDER) -> str:
    """``spec``'s name as ComfyUI lists it in model folder ``folder`` (e.g. ``1.6/latentsync_unet.pt``)."""
    relative = f"{spec.subdir}/{spec.dest_name}"
    if not relative.startswith(folder + "/"):
        raise ValueError(f"{spec.key} lives in {spec.subdir}, not under {folder}/")
    return relative[len(folder) + 1:]


def layout_lines() -> list[str]:
    """Where each model file goes under ComfyUI's models/ and where it comes from: the loader node's description,
    the editor's 'where do the model files go?' and the README's table all say this."""
    from .metrics.files import S3FD_FACE, STABLE_SYNCNET, SYNCNET_V2

    lines = [f"{spec.subdir}/{spec.dest_name}  <- huggingface.co/{spec.repo_id}"
             + (f" ({spec.filename})" if spec.filename != spec.dest_name else "")
             for spec in (UNET_FILES["1.5"], UNET_FILES["1.6"], WHISPER_TINY, VAE_FT_MSE, SYNCNET_V2, S3FD_FACE)]
    lines.append(f"{STABLE_SYNCNET.subdir}/{STABLE_SYNCNET.dest_name}  (optional, latentsync eval; never downloaded)")
    lines.append("insightface/models/buffalo_l/{det_10g,2d106det}.onnx  (optional: upstream's face detector)")
    return lines


def files_for_version(version: str) -> list[ModelFile]:
    """The three files one LatentSync release needs (U-Net, Whisper, VAE)."""
    return [UNET_FILES[version], WHISPER_TINY, VAE_FT_MSE]


class ModelFilesMissing(FileNotFoundError):
    """Model files are missing and could not (or may not) be downloaded; the message says what to put where."""

    def __init__(self, missing: Sequence[tuple[ModelFile, str]], reason: str = ""):
        self.missing = list(missing)
        self.reason = reason
        total = sum(spec.expected_bytes or 0 for spec, _ in self.missing)
        lines = [f"LatentSync model files are missing{': ' + reason if reason else ''}."]
        lines.append(f"Put each file at the path shown (or allow downloads; about {human_size(total)} in all):")
        for spec, dest in self.missing:
            also = "".join(f"\n      (also accepted: {os.path.join(os.path.dirname(dest), a)})" for a in spec.aliases)
            lines.append(f"  - {dest}{also}\n      from {spec.url}  ({spec.note or spec.key}, "
                         f"{'about ' if not spec.size else ''}{human_size(spec.expected_bytes)})")
        super().__init__("\n".join(lines))


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


STAGING = ".download"  # per target folder; huggingface_hub keeps its lock, metadata and partial files under it


def tidy_staging(staging: str) -> None:
    """Remove huggingface_hub's lock files from a staging folder and, unless a partial download waits there to be
    resumed, its metadata and bookkeeping too; then remove the folders left empty. Nothing else is deleted."""
    if not os.path.isdir(staging):
        return
    files = [os.path.join(d, f) for d, _, names in os.walk(staging) for f in names]
    resumable = any(f.endswith(".incomplete") for f in files)
    for path in files:
        name = os.path.basename(path)
        ours = name.endswith(".lock") or (not resumable and (
            name.endswith(".metadata") or name in (".gitignore", "CACHEDIR.TAG")) and f"{os.sep}.cache{os.sep}" in path)
        if ours:
            try:
                os.remove(path)
            except OSError:  # held by another download on Windows: left for that one
                pass
    for folder, _, _ in sorted(os.walk(staging), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(folder)  # only succeeds on an empty folder
        except OSError:
            pass


def download(spec: ModelFile, models_root: str) -> str:
    """Download one file into its place under ``models_root`` (resumable, progress on stderr) and verify it."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ModelFilesMissing([(spec, spec.dest(models_root))], "huggingface_hub is not installed (pip install huggingface_hub)") from exc
    dest = spec.dest(models_root)
    target_dir = os.path.join(models_root, spec.subdir)
    created = _missing_folders(target_dir)
    os.makedirs(target_dir, exist_ok=True)
    source = f"{hub.endpoint()}/{spec.repo_id}/resolve/{spec.revision}/{spec.filename}"
    log.info("Downloading %s (%s, %s) to %s", source, spec.note, human_size(spec.expected_bytes), dest)
    # hf_hub_download keeps the repo's sub-path under local_dir; download into a staging dir, then move.
    staging = os.path.join(target_dir, STAGING)
    try:
        path = hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, local_dir=staging,
                               endpoint=hub.endpoint())
        problem = None
        if spec.size is not None and os.path.getsize(path) != spec.size:
            problem = f"size {os.path.getsize(path)} != expected {spec.size} (incomplete download)"
        elif spec.sha256 is not None and sha256_of(path) != spec.sha256:
            problem = f"sha256 differs from the expected {spec.sha256}"
        if problem:
            os.remove(path)  # our own staging copy, never a user's file
            raise OSError(f"{spec.url}: {problem}; the file was discarded, try again")
        os.replace(path, dest)
    finally:
        tidy_staging(staging)
        for folder in created:  # after a failure, the folders this download made and left empty
            try:
                os.rmdir(folder)
            except OSError:
                break
    return dest


def _missing_folders(folder: str) -> list[str]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def ensure_files(
    specs: Iterable[ModelFile],
    models_root: str,
    *,
    allow_download: bool = True,
    existing: Optional[dict[str, str]] = None,
) -> dict[str, str]:
    """Return {key: path} for every spec, downloading missing files when allowed.

    ``existing`` maps keys to paths the caller already resolved (e.g. a file the user chose in a dropdown).
    Before downloading anything, :func:`hub.download_blocker` says whether a download can work; if not, or when
    one download fails, one :class:`ModelFilesMissing` names every file still missing and the cause.
    """
    existing = dict(existing or {})
    resolved: dict[str, str] = {}
    missing: list[tuple[ModelFile, str]] = []
    for spec in specs:
        chosen = existing.get(spec.key)
        path = chosen if chosen else spec.find(models_root)
        if path and os.path.isfile(path):
            resolved[spec.key] = path
        else:
            missing.append((spec, chosen or spec.dest(models_root)))
    if not missing:
        return resolved
    blocker = hub.download_blocker(allow_download)
    if blocker:
        raise ModelFilesMissing(missing, blocker)
    for n, (spec, _) in enumerate(missing):
        try:
            resolved[spec.key] = download(spec, models_root)
        except ModelFilesMissing:
            raise
        except Exception as exc:  # network errors come in many types (requests, httpx, OSError, hub errors)
            lines = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {lines[0] if lines else ''}"
            raise ModelFilesMissing(missing[n:], f"downloading {spec.dest_name} from {hub.endpoint()} failed "
                                    f"({detail})") from exc
    return resolved


def insightface_files() -> list[ModelFile]:
    """buffalo_l's detector and landmark files (upstream's face detector) as downloadable specs."""
    from .face.detector_registry import entry

    return entry("insightface").model_files()


def ensure_detector_files(detector: str, models_dirs: Sequence[str], *, allow_download: bool) -> None:
    """For a detector that downloads its files (the registry's ``downloads``), make sure they exist under one of
    ``models_dirs`` (download into the first when allowed). "auto" never downloads: it uses a detector only when
    its files are already there."""
    from .face.detector_registry import AUTO, canonical, entry

    if canonical(detector) == AUTO or not models_dirs or not entry(detector).downloads:
        return
    chosen = entry(detector)
    try:
        chosen.load().find_files(models_dirs)
    except Exception:  # DetectorUnavailableError: not found anywhere
        ensure_files(chosen.model_files(), models_dirs[0], allow_download=allow_download)
