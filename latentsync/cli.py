"""``latentsync`` (or ``python -m latentsync``): lip-sync a video (or still image) to an audio file, one pair or a
whole batch; ``latentsync doctor`` checks an install, ``latentsync selftest`` proves it works without downloads.

The same pipeline as the ComfyUI nodes, without ComfyUI. With no inputs it runs a demo on the bundled sample
(a public-domain photo and a short synthesised speech clip). Every option is checked before a model is loaded.

Exit codes: 0 done; 2 bad arguments (checked before anything loads); 3 model files missing (offline or downloads
off); 4 an input could not be used; 5 a batch finished with failed items; 130 interrupted; 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

from . import __version__
from .cli_jobs import Job, batch_jobs, default_output, input_problem
from .configs import DEFAULT_GUIDANCE, DEFAULT_SEED, DEFAULT_STEPS, DETECTOR_NAMES, RESOLUTION_BY_VERSION
from .locations import default_models_dir
from .progress import Progress

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODELS, EXIT_INPUT, EXIT_BATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_IMAGE, DEMO_AUDIO, DEMO_OUTPUT = ASSETS / "astronaut.jpg", ASSETS / "demo_speech.flac", "latentsync_demo.mp4"
SUBCOMMANDS = ("doctor", "selftest")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
DEFAULT_VERSION = "1.6"
THIRD_PARTY_LOGGERS = ("huggingface_hub", "diffusers", "transformers")

log = logging.getLogger("latentsync")

__all__ = ["ASSETS", "EXIT_USAGE", "build_parser", "default_models_dir", "main", "run"]


def program_name() -> str:
    """``python -m latentsync`` when started that way, else ``latentsync`` (the installed command)."""
    return "python -m latentsync" if Path(sys.argv[0]).name == "__main__.py" else "latentsync"


def build_parser() -> argparse.ArgumentParser:
    """The lip-sync command's options; defaults shown in ``--help`` are the ones that apply here."""
    prog = program_name()
    p = argparse.ArgumentParser(
        prog=prog,
        description=f"LatentSync 1.5/1.6 lip-sync (latentsync {__version__}): repaint the mouth of a talking-head "
                    "video (or a photo) to match an audio track.",
        epilog=f"With no --video/--audio/--batch, runs a demo on the bundled sample and writes {DEMO_OUTPUT} in the "
               f"current folder (model files are downloaded on first use, about 5.5 GB). Other commands: "
               f"'{prog} doctor' checks torch, PyAV, the face detectors and every model file; "
               f"'{prog} selftest' runs the whole pipeline on tiny random models (no download, under a minute on a "
               "CPU). Exit codes: 0 done, 2 bad arguments, 3 model files missing, 4 an input could not be used, "
               "5 a batch had failures, 130 interrupted.",
    )
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--video", "-v", help="input video file, or a still image (png/jpg/webp)")
    io.add_argument("--audio", "-a", help="driving audio file (wav, mp3, m4a, flac, ogg, or a video's audio track)")
    io.add_argument("--output", "-o", help="output mp4 (default: <video stem>_lipsync.mp4 beside the video)")
    io.add_argument("--batch", help="a folder of videos (each with a same-stem audio file beside it) or a list file "
                    "with one 'video<TAB>audio[<TAB>output]' line per job; finished outputs are skipped")
    io.add_argument("--output-dir", help="where batch outputs go (default: beside each video; created if missing)")
    io.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip / refuse)")
    m = p.add_argument_group("models")
    m.add_argument("--models-dir", default=None,
                   help="models root in ComfyUI's layout (latentsync/1.6/latentsync_unet.pt, latentsync/whisper/tiny.pt, "
                        f"vae/sd-vae-ft-mse.safetensors); default here: {default_models_dir()} "
                        "(set by $LATENTSYNC_MODELS, or ComfyUI's models/ when the pack sits in custom_nodes)")
    m.add_argument("--version", choices=sorted(RESOLUTION_BY_VERSION), default=DEFAULT_VERSION,
                   help="LatentSync release: 1.5 (256 px faces) or 1.6 (512 px); default %(default)s")
    m.add_argument("--unet", help="explicit U-Net checkpoint (overrides --version's default file)")
    m.add_argument("--whisper", help="explicit whisper checkpoint (default: latentsync/whisper/tiny.pt)")
    m.add_argument("--vae", help="explicit VAE (diffusers folder or .safetensors)")
    m.add_argument("--no-download", action="store_true", help="never download missing model files")
    s = p.add_argument_group("sampling")
    s.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM steps (default %(default)s)")
    s.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help="classifier-free guidance scale; 1.0 turns it off (default %(default)s)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed; -1 for a random one (default %(default)s)")
    s.add_argument("--deepcache", action="store_true", help="DeepCache (interval 3, branch 0), ~2x faster, as upstream's app")
    s.add_argument("--noise-on-cpu", action="store_true", help="draw noise on the CPU (same result on any device)")
    s.add_argument("--length-policy", default="pingpong", choices=["pingpong", "loop", "trim", "hold_last", "pad_audio"],
                   help="when audio and video lengths differ (default %(default)s, as upstream)")
    s.add_argument("--keep-silent-mouth", action="store_true", help="keep the original mouth where the audio is silent")
    s.add_argument("--posterior-mean", action="store_true",
                   help="use the VAE posterior mean instead of a random sample (upstream samples)")
    f = p.add_argument_group("faces")
    f.add_argument("--detector", default="auto", choices=DETECTOR_NAMES,
                   help="auto: insightface when its files are in the models folder, else dlib (the offline detector, "
                        "no download); insightface: upstream's detector (files downloaded when missing); "
                        "default %(default)s")
    f.add_argument("--face-index", default="largest", help="'largest' or the index of the face, left to right "
                   "(default %(default)s)")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps ... "
                   "(default %(default)s)")
    r.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="weights dtype (auto: fp16 on CUDA GPUs of compute capability 8+, else fp32)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the U-Net: ~1.6x faster steps after a one-time compile of 1-2 min (needs Triton on "
                        "GPUs; falls back to uncompiled when it cannot)")
    r.add_argument("--batch-chunks", type=int, default=0,
                   help="16-frame chunks per U-Net call; same result, more VRAM (default 0 = auto: 2 at 256 px on a GPU, else 1)")
    r.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better, 0..51 (default %(default)s)")
    r.add_argument("--preset", default="medium", choices=X264_PRESETS, metavar="PRESET",
                   help="x264 preset: ultrafast ... veryslow (default %(default)s)")
    r.add_argument("--fps", type=float, default=25.0, help="frame rate for still-image inputs (default %(default)s)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars, errors only")
    return p


@contextlib.contextmanager
def cli_logging(quiet: bool) -> Iterator[None]:
    """Our messages on stderr through one handler (no root handler, so nothing prints twice); with ``quiet``,
    only errors, also from huggingface_hub and diffusers, and no Python warnings or download bars."""
    logger = logging.getLogger("latentsync")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    saved = {name: logging.getLogger(name).level for name in ("latentsync",) + THIRD_PARTY_LOGGERS}
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    progress_env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
            for name in THIRD_PARTY_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)
            if quiet:
                if progress_env is None:
                    os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
                else:
                    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = progress_env


class UsageError(ValueError):
    """An option that cannot work, found before anything is loaded (exit 2)."""


def check_numbers(args: argparse.Namespace) -> None:
    """Ranges argparse cannot express."""
    if args.steps < 1 or args.guidance < 1.0 or not 0 <= args.crf <= 51 or args.fps <= 0 or args.batch_chunks < 0:
        raise UsageError("need --steps >= 1, --guidance >= 1.0, --crf within 0..51, --fps > 0, --batch-chunks >= 0")
    if args.face_index != "largest":
        try:
            if int(args.face_index) < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"--face-index must be 'largest' or a face number 0, 1, ...; got {args.face_index!r}") from None
    for flag in ("unet", "whisper", "vae"):
        path = getattr(args, flag)
        if path and not os.path.exists(path):
            raise UsageError(f"--{flag}: no such file or folder: {path}")
    if args.models_dir and os.path.exists(args.models_dir) and not os.path.isdir(args.models_dir):
        raise UsageError(f"--models-dir is a file, not a folder: {args.models_dir}")


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """The jobs the options ask for, with a single job's inputs and output checked (raises UsageError)."""
    if args.batch and (args.video or args.audio or args.output):
        raise UsageError("use either --batch (with --output-dir) or --video/--audio/--output")
    if bool(args.video) != bool(args.audio):
        raise UsageError("--video and --audio go together")
    if args.batch:
        if args.output_dir and os.path.isfile(args.output_dir):
            raise UsageError(f"--output-dir is a file: {args.output_dir}")
        try:
            return batch_jobs(args.batch, args.output_dir)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.video:
        job = Job(args.video, args.audio, args.output or default_output(args.video))
    else:
        job = Job(str(DEMO_IMAGE), str(DEMO_AUDIO), args.output or DEMO_OUTPUT)
    problem = input_problem(job)
    if problem:
        raise UsageError(problem)
    if os.path.exists(job.output) and not args.overwrite:
        raise UsageError(f"{job.output} exists; pass --overwrite or choose another --output")
    return [job]


def resolve_device(name: str):
    """The torch device for ``--device``; raises UsageError when it does not exist here."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no usable NVIDIA GPU or driver"
            raise UsageError(f"--device {name}: CUDA is not available here ({build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


def load_everything(args: argparse.Namespace, device, dtype):
    """Find (or download) the model files and load them; returns (models, vae)."""
    from . import model_files as mf
    from .pipeline.models import load_models

    root = args.models_dir or default_models_dir()
    unet_spec = mf.UNET_FILES[args.version]
    explicit = {unet_spec.key: args.unet, mf.WHISPER_TINY.key: args.whisper, mf.VAE_FT_MSE.key: args.vae}
    specs = [s for s in (unet_spec, mf.WHISPER_TINY, mf.VAE_FT_MSE) if not explicit[s.key]]
    paths = {k: v for k, v in explicit.items() if v}
    paths.update(mf.ensure_files(specs, root, allow_download=not args.no_download))
    mf.ensure_detector_files(args.detector, [root], allow_download=not args.no_download)
    for key, path in paths.items():
        log.info("Model file %s: %s", key, path)
    models = load_models(paths[unet_spec.key], paths[mf.WHISPER_TINY.key], version=args.version, device=device,
                         dtype=dtype, vae_path=paths[mf.VAE_FT_MSE.key])
    return models, models.vae


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line on ``argv`` (default: sys.argv) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or an option argparse refused (2, its message already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    with cli_logging(args.quiet):
        try:
            check_numbers(args)
            jobs = plan_jobs(args)
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        return run_jobs(args, jobs)


def run_jobs(args: argparse.Namespace, jobs: list[Job]) -> int:
    """Check the device, load the models once (only when a job is left to do) and run every job."""
    todo = [job for job in jobs if args.overwrite or not os.path.exists(job.output)]
    for job in jobs:
        if job not in todo:
            log.info("%s exists, skipping (finished earlier)", job.output)
    failed = 0
    if args.batch:
        if args.output_dir and todo:
            os.makedirs(args.output_dir, exist_ok=True)
        problems = {job: input_problem(job) for job in todo}
        for job, problem in problems.items():
            if problem:
                failed += 1
                log.error("%s failed: %s", Path(job.video).name, problem)
        todo = [job for job in todo if not problems[job]]
    if not jobs:
        log.warning("no jobs found in %s", args.batch)
    if not todo:
        if failed:
            log.error("%d of %d jobs failed", failed, len(jobs))
            return EXIT_BATCH
        if jobs:
            log.info("nothing to do: every output exists (pass --overwrite to redo them)")
        return EXIT_OK
    if not args.batch and len(jobs) == 1 and jobs[0].video == str(DEMO_IMAGE):
        log.info("No inputs given: running the demo (%s + %s) -> %s", DEMO_IMAGE.name, DEMO_AUDIO.name, jobs[0].output)

    try:
        device = resolve_device(args.device)
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    import torch

    from .model_files import ModelFilesMissing
    from .pipeline.models import pick_dtype
    from .pipeline.runner import RunOptions, lipsync_file
    from .pipeline.sampler import SamplerOptions

    dtype = pick_dtype(device, args.dtype)
    try:
        models, vae = load_everything(args, device, dtype)
    except ModelFilesMissing as exc:
        log.error("%s", exc)
        return EXIT_MODELS
    except (OSError, ValueError) as exc:
        log.error("could not load the models: %s", exc)
        return EXIT_MODELS
    except ImportError as exc:
        log.error("%s", exc)
        return EXIT_ERROR

    seed = None if args.seed == -1 else args.seed
    batch_chunks = args.batch_chunks or (2 if models.resolution <= 256 and device.type == "cuda" else 1)
    face_index = args.face_index if args.face_index == "largest" else int(args.face_index)
    options = RunOptions(
        sampler=SamplerOptions(steps=args.steps, guidance_scale=args.guidance, seed=seed, deepcache=args.deepcache,
                               noise_device="cpu" if args.noise_on_cpu else None,
                               posterior="mean" if args.posterior_mean else "sample", batch_chunks=batch_chunks),
        length_policy=args.length_policy, detector=args.detector, face_index=face_index,
        keep_silent_mouth=args.keep_silent_mouth, crf=args.crf, preset=args.preset, still_fps=args.fps, overwrite=args.overwrite,
        models_dirs=[args.models_dir or default_models_dir()], compile=args.compile,
    )
    if args.compile:  # one compiled wrapper for every job of a batch
        from .pipeline.compiled import maybe_compile

        models.unet = maybe_compile(models.unet, True, device=device, frames=options.sampler.chunk_frames,
                                    fixed_batch=batch_chunks)
    for n, job in enumerate(todo, 1):
        label = f"[{n}/{len(todo)}] {Path(job.video).name}"
        progress = Progress(not args.quiet, label)
        try:
            report = lipsync_file(models, vae, job.video, job.audio, job.output, options, device=device, dtype=dtype,
                                  progress=progress)
            progress.close()
            log.info("%s", report.summary())
        except KeyboardInterrupt:
            progress.close()
            log.error("interrupted")
            return EXIT_INTERRUPTED
        except (OSError, ValueError, RuntimeError) as exc:
            progress.close()
            failed += 1
            log.error("%s failed: %s", label, exc)
            if not args.batch:
                return EXIT_INPUT if isinstance(exc, (OSError, ValueError)) else EXIT_ERROR
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if failed:
        log.error("%d of %d jobs failed", failed, len(jobs))
        return EXIT_BATCH
    return EXIT_OK


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """``doctor`` or ``selftest``, each with its own options."""
    try:
        if name == "doctor":
            from .doctor import main as doctor_main

            return doctor_main(argv, prog=f"{program_name()} doctor")
        from .selftest import main as selftest_main

        return selftest_main(argv, prog=f"{program_name()} selftest")
    except SystemExit as exc:  # --help or a refused option
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def main() -> None:
    """Console entry point: run and exit with its code."""
    start = time.monotonic()
    try:
        code = run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    log.debug("finished in %.1f s", time.monotonic() - start)
    sys.exit(code)
