"""The command's sync gate options: ``--min-sync``, ``--sync-retries`` and ``--cut-log`` (parsing, checks, the
SyncNet models loaded once, and the JSON-lines cut log). The gate itself runs in the streaming runner
(:mod:`latentsync.pipeline.gate_runner`)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Optional

from .cli_checks import UsageError
from .option_checks import OptionError, check_number

log = logging.getLogger("latentsync")


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The "sync gate" option group (flags, ranges and help from latentsync/options.py)."""
    from .options import add_cli_argument

    g = parser.add_argument_group("sync gate")
    for name in ("min_sync", "sync_retries", "cut_log"):
        add_cli_argument(g, name)


def check_gate(args: argparse.Namespace) -> None:
    """--min-sync in 0..100 and --sync-retries in 0..10 (default 2), the latter only with --min-sync; --cut-log
    not a folder (UsageError, exit 2, before anything loads)."""
    from .pipeline.gate_runner import DEFAULT_RETRIES, MIN_SYNC, SYNC_RETRIES

    cut_log = getattr(args, "cut_log", None)
    if cut_log and os.path.isdir(cut_log):
        raise UsageError(f"--cut-log is a folder, not a file: {cut_log}; give a file path such as cuts.jsonl")
    min_sync, retries = getattr(args, "min_sync", None), getattr(args, "sync_retries", None)
    if min_sync is None:
        if retries is not None:
            raise UsageError("--sync-retries goes with --min-sync (the sync gate); add --min-sync X or drop it")
        return
    try:
        args.min_sync = float(check_number(min_sync, MIN_SYNC, "--min-sync"))
        args.sync_retries = int(check_number(DEFAULT_RETRIES if retries is None else retries, SYNC_RETRIES,
                                             "--sync-retries"))
    except OptionError as exc:
        raise UsageError(str(exc)) from None


def load_gate_models(runner: Any) -> Optional[int]:
    """With ``--min-sync``: SyncNet v2 loaded once into ``runner.sync_models`` (before the lip-sync models; the gate
    scores the faces the pipeline tracked, so S3FD is loaded only for ``--face-index speaker`` or ``--score``); the
    exit code when a file is missing (the CLI's missing-files message) or unreadable, else None."""
    if getattr(runner.args, "min_sync", None) is None:
        return None
    from .metrics.commands import load_sync_models_logged

    a = runner.args
    detector = getattr(a, "face_index", None) == "speaker" or bool(getattr(a, "score", False))  # they need S3FD
    runner.sync_models, failed = load_sync_models_logged(runner.root, runner.device, allow_download=not a.no_download,
                                                         prefix="--min-sync: ", detector=detector)
    return failed


def log_cuts(runner: Any, job: Any, report: Any) -> None:
    """With ``--cut-log``: one JSON line per gated segment (one for the job without the gate)."""
    path = getattr(runner.args, "cut_log", None)
    if not path:
        return
    from .metrics.gate import CutLog

    a = runner.args
    cut_log = CutLog(path, version=a.version, steps=a.steps, guidance=a.guidance, deepcache=bool(a.deepcache))
    job_fields = {"video": job.video, "audio": job.audio, "output": job.output}
    timings = {"job_seconds": report.seconds}
    try:
        if not report.gate:
            cut_log.record({**job_fields, "first_frame": 0, "last_frame": report.frames - 1}, seed=report.seed,
                           timings=timings, run_seed=report.seed)
        for n, segment in enumerate(report.gate):
            cut_log.record({**job_fields, "segment": n, "first_frame": segment.start, "last_frame": segment.stop - 1},
                           segment.decision, timings=timings, run_seed=report.seed)
    except OSError as exc:
        log.warning("could not write the cut log %s: %s", path, exc)
