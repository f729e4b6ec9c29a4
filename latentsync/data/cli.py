"""``latentsync data prepare SRC OUT``: argument parsing and checks over :func:`.runner.prepare` (the command line
only registers the ``data`` subcommand)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from ..exit_codes import EXIT_INPUT, EXIT_MODELS, EXIT_OK, EXIT_USAGE
from .files import FOLDERS, MANIFEST, RECORDS
from .options import PrepareOptions

log = logging.getLogger("latentsync")
DEFAULTS = PrepareOptions()


def parser(prog: str = "latentsync data") -> argparse.ArgumentParser:
    """Options of ``latentsync data prepare``; every default is upstream's."""
    from ..face import detector_registry
    from ..locations import default_models_dir

    p = argparse.ArgumentParser(prog=prog, description="Training data from raw talking-head videos, upstream "
                                "LatentSync's preprocess/data_processing_pipeline.py step by step.")
    sub = p.add_subparsers(dest="action", required=True, metavar="prepare")
    q = sub.add_parser("prepare", prog=f"{prog} prepare", help="run the preprocessing pipeline",
                       description="Drop unreadable files; resample to 25 fps / 16 kHz; cut scenes (PySceneDetect's "
                       "adaptive detector); cut 5 s segments; align faces; keep clips SyncNet finds in sync (offset "
                       "corrected); keep clips of good image quality (HyperIQA). Each step is resumable: a rerun "
                       "skips what is done. OUT/manifest.json lists every input and segment, kept or dropped, why, "
                       "and the scores. SRC is only read.")
    q.add_argument("src", help="folder of raw videos (searched recursively)")
    q.add_argument("out", help="output folder (resampled/, segmented/, affine_transformed/, av_synced/, "
                   "high_visual_quality/, records/, manifest.json)")
    q.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    q.add_argument("--device", default="auto", help="auto (one GPU per worker, round robin, else CPU), cpu, "
                   "cuda, cuda:1 (default %(default)s)")
    q.add_argument("--models-dir", help=f"models root (default here: {default_models_dir()}); SyncNet and S3FD "
                   "live in latentsync/auxiliary/ under it")
    q.add_argument("--no-download", action="store_true", help="never download missing model files")
    q.add_argument("--detector", default=DEFAULTS.detector, choices=detector_registry.accepted(),
                   help="face detector of the alignment step (default %(default)s)")
    q.add_argument("--resolution", type=int, default=DEFAULTS.resolution, help="aligned face size (default "
                   "%(default)s)")
    q.add_argument("--scene-threshold", type=float, default=DEFAULTS.scene_threshold,
                   help="adaptive detector's ratio threshold (upstream: %(default)s)")
    q.add_argument("--segment-seconds", type=float, default=DEFAULTS.segment_seconds,
                   help="segment length (upstream: %(default)s)")
    q.add_argument("--min-sync", type=float, default=DEFAULTS.min_sync,
                   help="keep clips with SyncNet confidence at least this (upstream: %(default)s)")
    q.add_argument("--max-offset", type=int, default=DEFAULTS.max_offset,
                   help="keep clips whose audio is off by at most this many frames (upstream: %(default)s)")
    q.add_argument("--min-track", type=int, default=DEFAULTS.min_track,
                   help="SyncNet's face tracks need more than this many frames (upstream: %(default)s)")
    q.add_argument("--min-quality", type=float, default=DEFAULTS.min_quality,
                   help="keep clips with HyperIQA quality at least this (upstream: %(default)s)")
    q.add_argument("--no-quality", action="store_true", help="skip the image-quality filter (keep clips unscored)")
    q.add_argument("--quiet", action="store_true", help="no progress bar, only warnings and errors")
    return p


def check(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the arguments (naming the input and the fix), or None."""
    src, out = Path(args.src), Path(args.out)
    if not src.is_dir():
        what = "is a file" if src.is_file() else "does not exist"
        return f"SRC {src} {what}; give the folder that holds the raw videos"
    if out.exists() and not out.is_dir():
        return f"OUT {out} is a file; give a folder (it is created when missing)"
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        return f"OUT {out} is inside SRC {src}; SRC is only read (and searched), give an output folder outside it"
    if o in s.parents and s.relative_to(o).parts[0] in (*FOLDERS.values(), RECORDS, MANIFEST):
        return f"SRC {src} is one of the output folders of OUT {out}; move the raw videos elsewhere"
    for name, value, low in (("--workers", args.workers, 1), ("--resolution", args.resolution, 64),
                             ("--segment-seconds", args.segment_seconds, 0.2), ("--min-track", args.min_track, 5),
                             ("--max-offset", args.max_offset, 0)):
        if not value >= low:
            return f"{name} {value}: use {low} or more"
    for name, value in (("--scene-threshold", args.scene_threshold), ("--min-sync", args.min_sync),
                        ("--min-quality", args.min_quality)):
        if value != value or value in (float("inf"), float("-inf")):
            return f"{name} {value}: give a finite number"
    return None


def detector_problem(name: str, models_root: str) -> Optional[str]:
    """Why the alignment step's face detector cannot run here (what to install or download), or None."""
    from ..face.detector_registry import canonical
    from ..face.detectors import detector_status

    status = detector_status([models_root])
    key = canonical(name)
    if key == "auto":
        if any(reason is None for reason in status.values()):
            return None
        return "no face detector can run here:\n" + "\n".join(f"{k}: {v}" for k, v in status.items())
    return None if status[key] is None else f"--detector {name}: {status[key]}"


def main(argv: Optional[Sequence[str]] = None, prog: str = "latentsync data") -> int:
    """Run ``latentsync data prepare``; returns the exit code."""
    from ..cli import cli_logging
    from ..cli_checks import UsageError, resolve_device
    from ..locations import default_models_dir
    from ..model_files import ModelFilesMissing
    from .records import SetupError
    from .runner import prepare

    args = parser(prog).parse_args(argv)
    with cli_logging(args.quiet):
        problem = check(args)
        if problem:
            log.error("%s", problem)
            return EXIT_USAGE
        try:
            device = "auto" if args.device == "auto" else str(resolve_device(args.device))
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        root = str(args.models_dir or default_models_dir())
        try:
            from ..metrics.files import KONIQ_HYPERIQA, SYNC_SCORE_FILES, find_or_fetch

            needed = list(SYNC_SCORE_FILES) + ([] if args.no_quality else [KONIQ_HYPERIQA])
            find_or_fetch(needed, root, allow_download=not args.no_download)
        except ModelFilesMissing as exc:
            log.error("the SyncNet and image-quality filters need these files (or pass --no-quality to skip the "
                      "quality filter): %s", exc)
            return EXIT_MODELS
        problem = detector_problem(args.detector, root)
        if problem:
            log.error("%s", problem)
            return EXIT_MODELS
        options = PrepareOptions(scene_threshold=args.scene_threshold, segment_seconds=args.segment_seconds,
                                 resolution=args.resolution, detector=args.detector, min_sync=args.min_sync,
                                 max_offset=args.max_offset, min_track=args.min_track, min_quality=args.min_quality,
                                 quality=not args.no_quality, models_dirs=(root,))
        try:
            summary = prepare(Path(args.src), Path(args.out), options, workers=args.workers, device=device,
                              models_root=root, progress=not args.quiet)
        except SetupError as exc:
            log.error("%s", exc)
            return EXIT_MODELS
        except OSError as exc:
            log.error("%s", exc)
            return EXIT_INPUT
        counts = summary.manifest["counts"]
        log.info("%d inputs (%d dropped), %d segments (%d kept, %d dropped); %d steps run; manifest %s",
                 counts["inputs"], counts["inputs_dropped"], counts["segments"], counts["segments_kept"],
                 counts["segments_dropped"], summary.steps_run, Path(args.out) / "manifest.json")
        return EXIT_OK
