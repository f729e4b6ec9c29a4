"""``latentsync batch JOBS``: the lip-sync command over many jobs, locally or with ``--ray`` on a Ray cluster.

JOBS is a folder (videos with same-stem audio files), a list file (``video<TAB>audio[<TAB>output]``), a CSV with a
header row or a JSONL file (fields ``video``, ``audio``, optional ``output`` and per-job options such as ``seed``,
``steps``, ``guidance``). Every lip-sync option of ``latentsync`` applies to all jobs.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from .cli_jobs import JOB_OPTIONS


def batch_parser(prog: str) -> argparse.ArgumentParser:
    """The lip-sync command's parser plus JOBS and the batch's own options."""
    from .cli import build_parser

    p = build_parser()
    p.prog = prog
    p.description = ("Lip-sync many jobs: finished outputs are skipped, identical earlier jobs come from the job "
                     "cache, each result goes into the manifest as it finishes. With --ray, one worker per GPU of a "
                     "Ray cluster (models loaded once per worker; a job whose worker dies is retried elsewhere).")
    p.epilog = (f"Per-job options in a CSV or JSONL file: {', '.join(JOB_OPTIONS)}. Exit codes as for latentsync; "
                "5 when a job failed.")
    p.add_argument("jobs", metavar="JOBS", nargs="?", help="a folder of videos with same-stem audio files, a list file "
                   "('video<TAB>audio[<TAB>output]' per line), a .csv with a header row or a .jsonl file")
    b = p.add_argument_group("batch")
    b.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray: with no ADDRESS, the cluster in $RAY_ADDRESS or the latest one started on this "
                        "machine, else a new local one; 'auto' requires a running cluster; or host:port / ray://...")
    b.add_argument("--workers", type=int, default=None,
                   help="Ray workers (default: one per GPU of the cluster; 1 without GPUs)")
    b.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each Ray worker takes (default 1 on a cluster with GPUs, else 0); 0.5 puts two on a GPU")
    b.add_argument("--score", action="store_true",
                   help="score every written output with SyncNet (confidence, distance, offset, as 'latentsync score') "
                        "into the manifest; needs auxiliary/syncnet_v2.model and sfd_face.pth in the models root")
    b.add_argument("--retries", type=int, default=2,
                   help="times a job is retried after its worker died (default %(default)s); a job that fails "
                        "on its own (bad input) is not retried")
    return p


def check_batch_options(args: argparse.Namespace) -> None:
    """Batch-only options: in range, and the Ray ones only with --ray (raises UsageError)."""
    from .cli_checks import UsageError

    for flag in ("video", "audio", "output", "batch"):
        if getattr(args, flag):
            raise UsageError(f"--{flag} does not go with 'batch': give the jobs as JOBS (a folder or a jobs file)")
    if args.ray is None and (args.workers is not None or args.gpus_per_worker is not None):
        raise UsageError("--workers and --gpus-per-worker go with --ray (locally, one process runs the jobs in turn)")
    if args.workers is not None and not 1 <= args.workers <= 4096:
        raise UsageError(f"--workers must be 1..4096, got {args.workers}")
    if args.gpus_per_worker is not None and not 0 <= args.gpus_per_worker <= 64:
        raise UsageError(f"--gpus-per-worker must be 0..64, got {args.gpus_per_worker:g}")
    if not 0 <= args.retries <= 100:
        raise UsageError(f"--retries must be 0..100, got {args.retries}")


def main(argv: Optional[Sequence[str]] = None, prog: str = "latentsync batch") -> int:
    """Parse, check every option and every job's own options, then run the batch; returns the exit code."""
    import logging

    from .cli import cli_logging, plan_jobs
    from .cli_checks import UsageError, apply_quality, check_numbers
    from .cli_gate import check_gate
    from .cli_jobs import job_args
    from .exit_codes import EXIT_USAGE

    parser = batch_parser(prog)
    args = parser.parse_args(argv)
    if args.jobs is None and args.ray:  # `batch --ray clips/`: --ray took JOBS as its address
        args.jobs, args.ray = args.ray, ""
    if args.jobs is None:
        parser.error("JOBS is required (a folder, a list, a .csv or a .jsonl file)")
    log = logging.getLogger("latentsync")
    with cli_logging(args.quiet):
        try:
            check_batch_options(args)
            args.batch = args.jobs
            apply_quality(args)
            check_numbers(args)
            check_gate(args)
            jobs = plan_jobs(args)
            for job in jobs:
                job_args(args, job)
        except UsageError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        from .distributed.batch import run_batch

        try:
            return run_batch(args, jobs, use_ray=args.ray is not None, address=args.ray or None,
                             workers=args.workers, gpus_per_worker=args.gpus_per_worker, retries=args.retries)
        except ImportError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
