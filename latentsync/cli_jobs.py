"""The command line's jobs: (video, audio, output) triples from the options or a batch, checked before loading."""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Tuple

log = logging.getLogger("latentsync")

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
OUTPUT_SUFFIX = "_lipsync.mp4"


JOB_OPTIONS = ("seed", "steps", "guidance", "deepcache", "keep_silent_mouth", "face_index", "length_policy", "posterior",
               "crf", "fps")
"""Options a job of a CSV/JSONL batch may set for itself (the rest, e.g. the models, are the run's: a worker loads
its models once for every job)."""


@dataclass(frozen=True)
class Job:
    """One lip-sync: a video (or still image), the audio that drives it, the mp4 to write, and the options this job
    sets for itself (``(name, value)`` pairs of :data:`JOB_OPTIONS`, from a CSV/JSONL batch)."""

    video: str
    audio: str
    output: str
    options: Tuple[Tuple[str, Any], ...] = ()


def default_output(video: str, output_dir: Optional[str] = None) -> str:
    """``<stem>_lipsync.mp4`` beside the video, or in ``output_dir``."""
    path = Path(video)
    return str((Path(output_dir) if output_dir else path.parent) / f"{path.stem}{OUTPUT_SUFFIX}")


def _is_output_of(path: Path, sources: set[str]) -> bool:
    """Whether ``path`` is ``<stem>_lipsync.mp4`` of a source file in the same folder (an earlier run's output)."""
    name = path.name
    return name.endswith(OUTPUT_SUFFIX) and name[: -len(OUTPUT_SUFFIX)] in sources


def folder_jobs(folder: Path, output_dir: Optional[str]) -> list[Job]:
    """Every video or image in ``folder`` with a same-stem audio file beside it; earlier outputs are skipped."""
    media = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
    stems = {p.stem for p in media}
    jobs = []
    for video in media:
        if _is_output_of(video, stems):
            continue
        audio = next((video.with_suffix(s) for s in AUDIO_SUFFIXES if video.with_suffix(s).is_file()), None)
        if audio is None:
            log.warning("skipping %s: no audio file with the same name", video)
            continue
        jobs.append(Job(str(video), str(audio), default_output(str(video), output_dir)))
    return jobs


def list_jobs(listing: Path, output_dir: Optional[str]) -> list[Job]:
    """Jobs from a list file: one ``video<TAB>audio[<TAB>output]`` (or comma-separated) line each; # comments."""
    jobs = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [x.strip() for x in (line.split("\t") if "\t" in line else line.split(","))]
        if len(parts) < 2:
            raise ValueError(f"{listing}:{n}: expected 'video<TAB>audio[<TAB>output]', got {line!r}")
        video, audio = parts[0], parts[1]
        jobs.append(Job(video, audio, parts[2] if len(parts) > 2 else default_output(video, output_dir)))
    return jobs


def _job_from_record(record: dict, where: str, output_dir: Optional[str]) -> Job:
    """A job from a CSV row or JSONL object: video, audio, optional output, and any of :data:`JOB_OPTIONS`."""
    record = {k.strip(): v for k, v in record.items() if k is not None and v not in (None, "")}
    missing = [k for k in ("video", "audio") if not isinstance(record.get(k), str)]
    if missing:
        raise ValueError(f"{where}: no {' or '.join(missing)} (each job needs 'video' and 'audio' file paths)")
    unknown = sorted(set(record) - {"video", "audio", "output", *JOB_OPTIONS})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; a job may set video, audio, output and "
                         f"{', '.join(JOB_OPTIONS)} (the models and devices are the whole run's options)")
    video = record["video"]
    output = record.get("output") or default_output(video, output_dir)
    options = tuple((name, record[name]) for name in JOB_OPTIONS if name in record)
    return Job(video, record["audio"], str(output), options)


def csv_jobs(listing: Path, output_dir: Optional[str]) -> list[Job]:
    """Jobs from a CSV file with a header row: video, audio, optional output and per-job options."""
    with open(listing, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [_job_from_record(row, f"{listing}:{n}", output_dir) for n, row in enumerate(rows, 2)]


def jsonl_jobs(listing: Path, output_dir: Optional[str]) -> list[Job]:
    """Jobs from a JSON-lines file: one object per line with video, audio, optional output and per-job options."""
    jobs = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{listing}:{n}: not a JSON object ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{listing}:{n}: expected a JSON object like {{\"video\": ..., \"audio\": ...}}")
        jobs.append(_job_from_record(record, f"{listing}:{n}", output_dir))
    return jobs


def batch_jobs(spec: str, output_dir: Optional[str]) -> list[Job]:
    """Jobs from a folder (video + same-stem audio), a CSV (with a header), a JSONL or a list file; raises
    OSError/ValueError when unusable."""
    path = Path(spec)
    if path.is_dir():
        return folder_jobs(path, output_dir)
    if path.is_file():
        reader = {".csv": csv_jobs, ".jsonl": jsonl_jobs}.get(path.suffix.lower(), list_jobs)
        return reader(path, output_dir)
    raise FileNotFoundError(f"--batch {spec}: no such folder or list file")


def job_args(args: argparse.Namespace, job: Job) -> argparse.Namespace:
    """The run's options with the job's own applied and checked (raises UsageError naming the job and option)."""
    if not job.options:
        return args
    from .cli_checks import UsageError, check_numbers
    from .options import OPTIONS

    out = copy.copy(args)
    for name, value in job.options:
        option = OPTIONS[name]
        dest = "posterior_mean" if name == "posterior" else option.flag.lstrip("-").replace("-", "_")
        if option.kind is bool and not isinstance(value, bool):
            if str(value).lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise UsageError(f"{job.video}: {name} must be true or false, got {value!r}")
            value = str(value).lower() in ("true", "1", "yes")
        if name == "posterior":
            if value not in option.choices:
                raise UsageError(f"{job.video}: posterior must be one of {', '.join(option.choices)}, got {value!r}")
            value = value == "mean"
        elif option.choices and value not in option.choices:
            raise UsageError(f"{job.video}: {name} must be one of {', '.join(option.choices)}, got {value!r}")
        elif option.kind in (int, float) and isinstance(value, str):
            from .option_checks import parse_number

            try:
                value = parse_number(value)
            except (ValueError, argparse.ArgumentTypeError):
                raise UsageError(f"{job.video}: {name} must be a number, got {value!r}") from None
        setattr(out, dest, str(value) if name == "face_index" else value)
    try:
        check_numbers(out)
    except UsageError as exc:
        raise UsageError(f"{job.video}: {exc}") from None
    return out


def input_problem(job: Job) -> Optional[str]:
    """Why a job cannot start (an input missing, the output's folder missing), or None."""
    for path, what in ((job.video, "video"), (job.audio, "audio")):
        if not os.path.isfile(path):
            return f"{what} file not found: {path}" if not os.path.isdir(path) else f"{what} is a folder: {path}"
    folder = os.path.dirname(os.path.abspath(job.output))
    if not os.path.isdir(folder):
        return f"the output's folder does not exist: {folder}"
    if os.path.isdir(job.output):
        return f"the output is a folder: {job.output}"
    return None


def protected_files(jobs: Sequence[Job], others: Iterable[Tuple[str, Optional[str]]]) -> list[Tuple[str, str]]:
    """(what, path) of every file a run reads: each job's video and audio, plus ``others`` (models, the list)."""
    out = []
    for job in jobs:
        out += [("video input", job.video), ("audio input", job.audio)]
    out += [(what, path) for what, path in others if path]
    return out


def output_problem(job: Job, protected: Sequence[Tuple[str, str]]) -> Optional[str]:
    """Why the job must not write its output: it would replace one of the files the run reads."""
    from .safe_paths import overwrite_problem

    return overwrite_problem(job.output, protected)
