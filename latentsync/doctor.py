"""``latentsync doctor``: what is installed, what a run would use, and every model file present or missing.

Run it when something is off: it reports torch (CUDA / MPS devices and what ``--device auto`` picks), PyAV and
its encoders, diffusers, the Hugging Face hub (offline variables, reachability), both face detectors and their
weights, every model file with its size and sha256 (or where it is looked for), and the ComfyUI folder if any.
It loads no model and downloads nothing. Exit 0 when a run can work, 1 when something blocks it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from . import __version__, hub
from . import model_files as mf
from .locations import default_models_dir_and_origin, looks_like_comfyui, pack_comfyui

OK, INFO, WARN, MISSING, FAIL = "ok", "info", "warn", "missing", "FAIL"


@dataclass
class Section:
    """A titled list of (status, text) lines."""

    title: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, status: str, text: str) -> None:
        self.lines.append((status, text))


@dataclass
class Diagnosis:
    """Every section, and the problems that block a run."""

    sections: list[Section] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]

    def render(self) -> str:
        out = []
        for sec in self.sections:
            out.append(sec.title)
            out += [f"  {status:<8}{text}" for status, text in sec.lines]
        out.append("Summary")
        if self.problems:
            out += [f"  {FAIL:<8}{p}" for p in self.problems]
        else:
            out.append(f"  {OK:<8}nothing blocks a run")
        return "\n".join(out)


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    names = {"av": "av", "dlib": "dlib-bin", "onnxruntime": "onnxruntime"}
    for dist in (names.get(module, module), module, "onnxruntime-gpu" if module == "onnxruntime" else module):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def check_python(diag: Diagnosis) -> None:
    sec = diag.section("Program")
    sec.add(INFO, f"latentsync {__version__} at {Path(__file__).resolve().parent}")
    sec.add(INFO, f"Python {platform.python_version()} at {sys.executable} ({platform.platform()})")


def check_torch(diag: Diagnosis) -> None:
    sec = diag.section("torch and devices")
    try:
        import torch
    except ImportError:
        sec.add(FAIL, "torch is not installed: pip install torch (the build for your GPU: https://pytorch.org)")
        diag.problems.append("torch is not installed")
        return
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    sec.add(OK, f"torch {torch.__version__} ({build}), {torch.get_num_threads()} CPU threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            sec.add(OK, f"cuda:{i} {props.name}, {props.total_memory / 1024**3:.1f} GiB, compute capability "
                        f"{props.major}.{props.minor}")
    elif torch.version.cuda:
        sec.add(WARN, "CUDA build, but no GPU is usable (driver missing or too old, or CUDA_VISIBLE_DEVICES empty)")
    else:
        sec.add(INFO, "no CUDA in this torch build (for an NVIDIA GPU install the CUDA build from pytorch.org)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        sec.add(OK, "Apple MPS is available")
    from .cli import resolve_device
    from .pipeline.loading import pick_dtype

    device = resolve_device("auto")
    dtype = str(pick_dtype(device)).replace("torch.", "")
    sec.add(INFO, f"--device auto uses {device}, --dtype auto uses {dtype}")
    if device.type == "cpu":
        sec.add(INFO, "a real run on a CPU is slow: about half an hour per second of video at 256 px on 2 cores "
                      "(README, 'What a CPU run costs'); 'latentsync selftest' is quick")


def check_media(diag: Diagnosis) -> None:
    sec = diag.section("Media (PyAV) and VAE (diffusers)")
    try:
        import av
        from av.codec import Codec
    except ImportError:
        sec.add(FAIL, "PyAV is not installed: pip install 'av>=14.2'")
        diag.problems.append("PyAV is not installed")
    else:
        libs = getattr(av, "library_versions", {})
        codec = ".".join(map(str, libs.get("libavcodec", ()))) or "?"
        sec.add(OK, f"PyAV {av.__version__} (libavcodec {codec})")
        for name in ("libx264", "aac"):
            try:
                Codec(name, "w")
                sec.add(OK, f"encoder {name} available")
            except Exception as exc:  # av.codec.codec.UnknownCodecError and friends
                sec.add(FAIL, f"encoder {name} missing ({exc}); reinstall PyAV from PyPI (its wheels include it)")
                diag.problems.append(f"PyAV has no {name} encoder")
    version = _version("diffusers")
    if version:
        sec.add(OK, f"diffusers {version} (the command line's VAE)")
    else:
        sec.add(FAIL, "diffusers is not installed: the command line needs it for the VAE (pip install diffusers, or "
                      "install this package with the [cli] extra); ComfyUI uses its own VAE")
        diag.problems.append("diffusers is not installed (pip install diffusers)")


def check_hub(diag: Diagnosis, network: bool) -> Optional[str]:
    """Returns why downloads cannot work now, or None."""
    sec = diag.section("Downloads (Hugging Face)")
    version = _version("huggingface_hub")
    sec.add(OK if version else FAIL, f"huggingface_hub {version}" if version else
            "huggingface_hub is not installed: missing model files cannot be downloaded (pip install huggingface_hub)")
    sec.add(INFO, f"hub address {hub.endpoint()}" + (" (from $HF_ENDPOINT)" if os.environ.get("HF_ENDPOINT") else ""))
    if not version:
        return "huggingface_hub is not installed"
    blocker = hub.download_blocker(True, check_network=network)
    if blocker:
        sec.add(WARN, f"downloads cannot work now: {blocker}")
    elif network:
        sec.add(OK, "the hub answers: missing official files can be downloaded")
    else:
        sec.add(INFO, "reachability not checked (--no-network)")
    return blocker


def _file_line(path: str, hashing: bool, expected_sha: Optional[str] = None, expected_size: Optional[int] = None) -> tuple[str, str]:
    size = os.path.getsize(path)
    text = f"{path}  {mf.human_size(size)} ({size:,} bytes)"
    status = OK
    if expected_size is not None and size != expected_size:
        status, text = WARN, text + f"  SIZE DIFFERS from the official {expected_size:,} bytes"
    if hashing:
        digest = mf.sha256_of(path)
        text += f"  sha256 {digest}"
        if expected_sha is not None:
            if digest == expected_sha:
                text += " (matches the official file)"
            else:
                status, text = WARN, text + f" DIFFERS from the official {expected_sha}"
    return status, text


def check_detectors(diag: Diagnosis, roots: list[str], hashing: bool) -> None:
    sec = diag.section("Face detectors")
    from .face.detectors import detector_status
    from .face.detectors.insightface_onnx import INSIGHTFACE_FILES, candidate_dirs, find_insightface_files

    status = detector_status(roots)
    if status["offline"] is None:
        from .face.detectors.dlib_hog import default_predictor_path

        sec.add(OK, f"dlib {_version('dlib') or ''} (offline detector, no download)".replace("  ", " "))
        try:
            st, text = _file_line(str(default_predictor_path()), hashing)
            sec.add(st, "dlib landmark model " + text)
        except Exception as exc:  # DetectorUnavailableError: the package is there, its data file is not
            sec.add(FAIL, str(exc))
            status["offline"] = str(exc)
    else:
        sec.add(WARN, f"dlib: {status['offline']}")
    ort = _version("onnxruntime")
    if ort:
        import onnxruntime

        sec.add(OK, f"onnxruntime {ort} ({', '.join(onnxruntime.get_available_providers())})")
    else:
        sec.add(INFO, "onnxruntime is not installed (only insightface needs it: pip install onnxruntime or onnxruntime-gpu)")
    try:
        found = find_insightface_files(roots)
    except Exception:  # DetectorUnavailableError
        found = None
    for f in INSIGHTFACE_FILES:
        if found:
            st, text = _file_line(str(found[f.name]), hashing, f.sha256, f.size)
            sec.add(st, f"insightface {f.name} {text}")
        else:
            sec.add(MISSING, f"insightface {f.name} (optional, {mf.human_size(f.size)}) not in any of: "
                             + ", ".join(str(d) for d in candidate_dirs(roots)))
    if status["insightface"] is None:
        sec.add(INFO, "--detector auto uses insightface (upstream's detector)")
    elif status["offline"] is None:
        sec.add(INFO, "--detector auto uses dlib (insightface files or onnxruntime not found)")
    else:
        sec.add(FAIL, "no face detector can run: pip install dlib-bin face-recognition-models")
        diag.problems.append("no face detector can run (pip install dlib-bin face-recognition-models)")


def check_models(diag: Diagnosis, root: str, origin: str, hashing: bool, blocker: Optional[str]) -> None:
    sec = diag.section("Model files")
    sec.add(INFO, f"models folder {root} ({origin})")
    probe = Path(root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free if probe.exists() else None
    if free is not None:
        sec.add(INFO, f"free space there: {mf.human_size(free)}")
    specs = [mf.UNET_FILES[v] for v in sorted(mf.UNET_FILES, reverse=True)] + [mf.WHISPER_TINY, mf.VAE_FT_MSE]
    found = {spec.key: spec.find(root) for spec in specs}
    for spec in specs:
        path = found[spec.key]
        if path is not None:
            st, text = _file_line(path, hashing, spec.sha256, spec.size)
            sec.add(st, f"{spec.note}: {text}")
        else:
            where = " or ".join(spec.candidates(root))
            sec.add(MISSING, f"{spec.note}: not at {where} (official file: {spec.url}, about "
                             f"{mf.human_size(spec.expected_bytes)})")
    missing_by_version = {v: [s for s in mf.files_for_version(v) if found[s.key] is None] for v in sorted(mf.UNET_FILES)}
    for version, missing in missing_by_version.items():
        if not missing:
            sec.add(OK, f"--version {version}: every file is present")
            continue
        total = mf.human_size(sum(s.expected_bytes or 0 for s in missing))
        if blocker:
            sec.add(WARN, f"--version {version}: {len(missing)} file(s) missing and downloads cannot work now "
                          f"({blocker})")
        else:
            sec.add(INFO, f"--version {version}: {len(missing)} file(s), about {total}, will be downloaded on first use")
    default_missing = missing_by_version[_default_version()]
    if default_missing and blocker:
        diag.problems.append(f"model files for --version {_default_version()} are missing and cannot be downloaded now "
                             f"({blocker})")
    if default_missing and free is not None and not blocker:
        need = sum(s.expected_bytes or 0 for s in default_missing)
        if free < need:
            diag.problems.append(f"not enough free space in {probe} for the downloads ({mf.human_size(need)} needed)")


def check_metric_files(diag: Diagnosis, root: str, hashing: bool) -> None:
    """The sync-score and evaluation files (optional: only ``latentsync score``/``eval``, the Sync Score node and
    ``--face-index speaker`` need them; downloaded on first use)."""
    from .metrics import files as metric_files

    sec = diag.section("Sync metrics files (optional)")
    for spec in metric_files.ALL_FILES:
        path = spec.find(root)
        if path is not None:
            st, text = _file_line(path, hashing, spec.sha256, spec.size)
            sec.add(st, f"{spec.note}: {text}")
        else:
            when = ("used by latentsync eval when present" if spec is metric_files.STABLE_SYNCNET
                    else "downloaded when a sync score first needs it")
            sec.add(INFO, f"{spec.note}: not at {spec.dest(root)} (official file: {spec.url}, about "
                          f"{mf.human_size(spec.expected_bytes)}; {when})")


def _default_version() -> str:
    from .configs import DEFAULT_VERSION

    return DEFAULT_VERSION


def check_comfyui(diag: Diagnosis, root: str) -> None:
    sec = diag.section("ComfyUI")
    comfy = pack_comfyui()
    cwd = Path.cwd()
    if comfy is not None:
        sec.add(OK, f"this pack sits in {comfy / 'custom_nodes'}; ComfyUI's models folder is {comfy / 'models'}")
    elif looks_like_comfyui(cwd):
        comfy = cwd
        sec.add(INFO, f"the current folder is a ComfyUI installation: {cwd}")
    else:
        sec.add(INFO, "no ComfyUI found (this library is not inside a ComfyUI custom_nodes folder)")
    if comfy is not None and Path(root).resolve() != (comfy / "models").resolve():
        sec.add(INFO, f"to share ComfyUI's model files: --models-dir {comfy / 'models'} (or set LATENTSYNC_MODELS)")


def diagnose(models_dir: Optional[str] = None, *, hashing: bool = True, network: bool = True) -> Diagnosis:
    """Run every check (no model is loaded, nothing is downloaded)."""
    if models_dir:
        root, origin = models_dir, "--models-dir"
    else:
        root, origin = default_models_dir_and_origin()
    diag = Diagnosis()
    check_python(diag)
    check_torch(diag)
    check_media(diag)
    blocker = check_hub(diag, network)
    if importlib.util.find_spec("torch") is not None:
        check_detectors(diag, [root], hashing)
    check_models(diag, root, origin, hashing, blocker)
    check_metric_files(diag, root, hashing)
    check_comfyui(diag, root)
    return diag


def build_parser(prog: str = "latentsync doctor") -> argparse.ArgumentParser:
    """Options of ``latentsync doctor``."""
    p = argparse.ArgumentParser(prog=prog, description="Check the install: torch and devices, PyAV, diffusers, "
                                "downloads, face detectors, every model file (size and sha256) and ComfyUI.")
    p.add_argument("--models-dir", help="models root to check (default: the one the lip-sync command uses)")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 of each file (5 GB U-Nets take seconds)")
    p.add_argument("--no-network", action="store_true", help="do not check whether the hub can be reached")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "latentsync doctor") -> int:
    """Print the diagnosis; exit code 0 when nothing blocks a run, else 1."""
    args = build_parser(prog).parse_args(argv)
    diag = diagnose(args.models_dir, hashing=not args.no_hash, network=not args.no_network)
    print(diag.render())
    return 1 if diag.problems else 0
