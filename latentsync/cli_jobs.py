"""The command line's jobs: (video, audio, output) triples from the options or a batch, checked before loading."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

log = logging.getLogger("latentsync")

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
OUTPUT_SUFFIX = "_lipsync.mp4"


@dataclass(frozen=True)
class Job:
    """One lip-sync: a video (or still image), the audio that drives it and the mp4 to write."""

    video: str
    audio: str
    output: str


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


def batch_jobs(spec: str, output_dir: Optional[str]) -> list[Job]:
    """Jobs from a folder (video + same-stem audio) or a list file; raises OSError/ValueError when unusable."""
    path = Path(spec)
    if path.is_dir():
        return folder_jobs(path, output_dir)
    if path.is_file():
        return list_jobs(path, output_dir)
    raise FileNotFoundError(f"--batch {spec}: no such folder or list file")


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
