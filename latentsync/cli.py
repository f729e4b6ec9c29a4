"""``latentsync`` (or ``python -m latentsync``): lip-sync a video (or still image) to an audio file, one pair or a
whole batch; ``latentsync doctor`` checks an install, ``latentsync selftest`` proves it works without downloads.

The same pipeline as the ComfyUI nodes, without ComfyUI. With no inputs it runs a demo on the bundled sample
(a public-domain photo and a short synthesised speech clip). Every option is checked before a model is loaded.

Exit codes: 0 done; 2 bad arguments (checked before anything loads); 3 model files missing (offline or downloads
off); 4 an input could not be used; 5 a batch finished with failed items; 6 no usable face (with --require-face);
130 interrupted (Ctrl-C); 143 stopped by SIGTERM; 1 anything else.
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
from .cli_checks import UsageError, apply_quality, check_numbers, resolve_device
from .cli_jobs import Job, batch_jobs, default_output, input_problem
from .cli_gate import add_gate_arguments, check_gate
from .distributed.devices import add_devices_argument, check_devices
from .configs import DEFAULT_VERSION, RESOLUTION_BY_VERSION
from .exit_codes import (EXIT_BATCH, EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODELS, EXIT_NO_FACE, EXIT_OK,
                         EXIT_USAGE)
from .locations import default_models_dir
from .face import detector_registry
from .options import add_cli_argument

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_IMAGE, DEMO_AUDIO, DEMO_OUTPUT = ASSETS / "astronaut.jpg", ASSETS / "demo_speech.flac", "latentsync_demo.mp4"
SUBCOMMANDS = ("doctor", "selftest", "score", "eval", "batch", "train", "data")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
THIRD_PARTY_LOGGERS = ("huggingface_hub", "diffusers", "transformers")

log = logging.getLogger("latentsync")

__all__ = ["ASSETS", "EXIT_BATCH", "EXIT_ERROR", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_MODELS", "EXIT_NO_FACE",
           "EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "default_models_dir", "main", "resolve_device", "run"]


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
               f"CPU); '{prog} score VIDEO' gives a video's SyncNet sync score, '{prog} eval --real DIR --fake DIR' "
               "upstream's evaluation (LSE-C, LSE-D, SyncNet accuracy, PSNR/SSIM outside the face); "
               f"'{prog} batch JOBS [--ray]' many jobs, on a Ray cluster with --ray. Exit codes: "
               "0 done, 2 bad arguments, 3 model files missing, 4 an input could not be used, "
               "5 a batch had failures, 6 no usable face (--require-face), 130 interrupted, 143 stopped by SIGTERM.",
    )
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--video", "-v", help="input video file, or a still image (png/jpg/webp)")
    io.add_argument("--audio", "-a", help="driving audio file (wav, mp3, m4a, flac, ogg, or a video's audio track)")
    io.add_argument("--output", "-o", help="output mp4 (default: <video stem>_lipsync.mp4 beside the video)")
    io.add_argument("--fix-offset", action="store_true",
                    help="measure the audio's offset to the lips with SyncNet (first 30 s, as upstream's data "
                    "preprocessing) and shift the audio by it before the run; for audio that is the video's own "
                    "speech (e.g. a cleaned take); needs auxiliary/syncnet_v2.model and sfd_face.pth")
    io.add_argument("--batch", help="a folder of videos (each with a same-stem audio file beside it) or a list file "
                    "with one 'video<TAB>audio[<TAB>output]' line per job; finished outputs are skipped")
    io.add_argument("--output-dir", help="where batch outputs go (default: beside each video; created if missing)")
    io.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip / refuse); "
                    "an input file is never replaced")
    io.add_argument("--manifest", help="batch manifest (JSON: every job and its status, faces found, errors); default "
                    "latentsync_manifest.json in --output-dir or the batch folder, or LIST.manifest.json beside a list")
    io.add_argument("--cache-dir", help="finished-job cache (default $LATENTSYNC_CACHE_DIR or ~/.cache/latentsync/jobs):"
                    " a rerun with the same inputs and settings returns the earlier output at once")
    io.add_argument("--no-cache", action="store_true", help="neither use nor record finished jobs")
    m = p.add_argument_group("models")
    m.add_argument("--models-dir", default=None,
                   help="models root in ComfyUI's layout (latentsync/1.6/latentsync_unet.pt, latentsync/whisper/tiny.pt, "
                        f"vae/sd-vae-ft-mse.safetensors); default here: {default_models_dir()} "
                        "(set by $LATENTSYNC_MODELS, or ComfyUI's models/ when the pack sits in custom_nodes)")
    m.add_argument("--version", choices=sorted(RESOLUTION_BY_VERSION), default=None,
                   help=f"LatentSync release: 1.5 (256 px faces) or 1.6 (512 px); default {DEFAULT_VERSION} "
                        "(or the --quality preset's)")
    m.add_argument("--unet", help="explicit U-Net checkpoint (overrides --version's default file)")
    m.add_argument("--whisper", help="explicit whisper checkpoint (default: latentsync/whisper/tiny.pt)")
    m.add_argument("--vae", help="explicit VAE (diffusers folder or .safetensors)")
    m.add_argument("--no-download", action="store_true", help="never download missing model files")
    s = p.add_argument_group("sampling")
    for name in ("quality", "steps", "guidance", "seed", "deepcache"):  # flags, defaults, help: latentsync/options.py
        add_cli_argument(s, name)
    s.add_argument("--noise-on-cpu", action="store_true", help="draw noise on the CPU (same result on any device)")
    for name in ("length_policy", "keep_silent_mouth", "posterior"):
        add_cli_argument(s, name)
    add_gate_arguments(p)
    f = p.add_argument_group("faces")
    add_cli_argument(f, "detector", choices=list(detector_registry.accepted()))  # 'dlib': offline's older name
    add_cli_argument(f, "face_index")
    add_cli_argument(f, "require_face", help="exit 6 (a batch: mark the job failed) without writing when no frame has "
                     "a usable face; by default such a video is passed through unchanged and reported")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps ... "
                   "(default %(default)s)")
    r.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="weights dtype (auto: fp16 on CUDA GPUs of compute capability 8+, else fp32)")
    add_cli_argument(r, "compile")
    add_cli_argument(r, "batch_chunks", default=0)  # 0 = auto (the command picks 1 or 2; the result is the same)
    add_devices_argument(r)
    add_cli_argument(r, "crf")
    add_cli_argument(r, "encode_threads")
    r.add_argument("--preset", default="medium", choices=X264_PRESETS, metavar="PRESET",
                   help="x264 preset: ultrafast ... veryslow (default %(default)s)")
    add_cli_argument(r, "fps")
    r.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bars or info messages: errors, warnings about the result, and one summary line "
                        "per job (on stdout)")
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


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """The jobs the options ask for, with a single job's inputs checked (raises UsageError)."""
    if args.batch and (args.video or args.audio or args.output):
        raise UsageError("use either --batch (with --output-dir) or --video/--audio/--output")
    if bool(args.video) != bool(args.audio):
        raise UsageError("--video and --audio go together")
    if args.manifest and not args.batch:
        raise UsageError("--manifest goes with --batch")
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
    return [job]


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
            apply_quality(args)
            check_numbers(args)
            check_gate(args)
            jobs = plan_jobs(args)
            check_devices(args)  # --devices: checked (and Ray found) before anything loads
            device = resolve_device(args.device)
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        from .cli_runner import run_jobs

        return run_jobs(args, jobs, device)


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """``doctor``, ``selftest``, ``score``, ``eval`` or ``batch``, each with its own options."""
    try:
        if name == "doctor":
            from .doctor import main as doctor_main

            return doctor_main(argv, prog=f"{program_name()} doctor")
        if name == "batch":
            from .cli_batch import main as batch_main

            return batch_main(argv, prog=f"{program_name()} batch")
        if name in ("score", "eval"):
            from .metrics import commands

            main_of = commands.score_main if name == "score" else commands.eval_main
            return main_of(argv, prog=f"{program_name()} {name}")
        if name == "train":
            from .train.cli import main as train_main

            return train_main(argv, prog=f"{program_name()} train")
        if name == "data":
            from .data.cli import main as data_main

            return data_main(argv, prog=f"{program_name()} data")
        from .selftest import main as selftest_main

        return selftest_main(argv, prog=f"{program_name()} selftest")
    except SystemExit as exc:  # --help or a refused option
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def main() -> None:
    """Console entry point: run and exit with its code; SIGTERM cleans up like Ctrl-C (exit 143)."""
    from .signals import Terminated, terminate_as_interrupt

    start = time.monotonic()
    try:
        with terminate_as_interrupt():
            code = run()
    except Terminated as exc:
        print(f"interrupted ({exc})", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    log.debug("finished in %.1f s", time.monotonic() - start)
    sys.exit(code)
