"""``latentsync batch``: locally, and on a real local Ray cluster with 2 CPU workers — a 4-job batch with one broken
input, a worker killed (SIGKILL) in the middle of a job (the job is retried on a fresh worker and finishes), and a
rerun that recomputes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from latentsync import cli
from latentsync.cli_batch import batch_parser, check_batch_options
from latentsync.cli_checks import UsageError, apply_quality
from latentsync.cli_jobs import batch_jobs, job_args
import sync_media
from test_batch_manifest import tiny_args


def make_jobs(clip, folder: Path, n_good: int) -> Path:
    """``n_good`` copies of the face clip and a broken video, with a JSONL jobs file (one job sets its own seed)."""
    video, audio = clip
    folder.mkdir()
    lines = []
    for i in range(n_good):
        shutil.copy(video, folder / f"take{i}.mp4")
        lines.append({"video": str(folder / f"take{i}.mp4"), "audio": str(audio)} | ({"seed": 7} if i == 1 else {}))
    (folder / "broken.mp4").write_bytes(b"\0" * 512)
    lines.append({"video": str(folder / "broken.mp4"), "audio": str(audio)})
    jobs = folder / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return jobs


def manifest(folder: Path) -> dict:
    data = json.loads((folder / "jobs.jsonl.manifest.json").read_text())
    return {Path(job["video"]).stem: job for job in data["jobs"]}


def outputs(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*_lipsync.mp4")}


def test_local_batch_runs_jsonl_jobs_scores_and_records_them(models, clip, tmp_path):
    jobs = make_jobs(clip, tmp_path / "clips", 2)
    sync_root = sync_media.metric_models(tmp_path / "sync_models")  # tiny SyncNet v2 + S3FD in the real formats
    argv = ["batch", str(jobs), *tiny_args(models, "--cache-dir", str(tmp_path / "cache"), "--score",
                                            "--models-dir", str(sync_root))]
    assert cli.run(argv) == cli.EXIT_BATCH  # the broken input fails, the rest is done
    entries = manifest(tmp_path / "clips")
    assert entries["broken"]["status"] == "failed"
    for name in ("take0", "take1"):
        assert entries[name]["status"] == "done" and entries[name]["frames"] > 0
        assert entries[name]["attempts"] == 1 and entries[name]["worker"]
        sync = entries[name]["sync"]  # scored, or why not (a 12-frame clip can be too short for SyncNet)
        assert set(sync) >= {"scorable", "confidence", "distance", "offset"}
        assert (sync["confidence"] is not None) == sync["scorable"] and (sync["scorable"] or sync["reason"])
    assert entries["take1"]["options"] == {"seed": 7} and entries["take0"]["options"] is None
    keys = [entries[name]["key"] for name in ("take0", "take1")]
    assert all(len(k) == 64 for k in keys) and keys[0] != keys[1]  # same clip, the job's own seed
    # Same clip, another seed: another result.
    a, b = ((tmp_path / "clips" / f"take{i}_lipsync.mp4").read_bytes() for i in (0, 1))
    assert a != b


def test_job_options_are_checked_before_anything_runs(models, clip, tmp_path):
    video, audio = clip
    bad = tmp_path / "jobs.csv"
    bad.write_text(f"video,audio,steps\n{video},{audio},0\n")
    assert cli.run(["batch", str(bad), *tiny_args(models)]) == cli.EXIT_USAGE
    unknown = tmp_path / "more.jsonl"
    unknown.write_text(json.dumps({"video": str(video), "audio": str(audio), "unet": "x.pt"}) + "\n")
    with pytest.raises(ValueError, match="unknown field.*unet"):
        batch_jobs(str(unknown), None)
    good = tmp_path / "good.csv"
    good.write_text(f"video,audio,guidance,deepcache\n{video},{audio},2.5,false\n")
    (job,) = batch_jobs(str(good), None)
    args = batch_parser("t").parse_args([str(good)])
    apply_quality(args)
    applied = job_args(args, job)
    assert applied.guidance == 2.5 and applied.deepcache is False and args.guidance != 2.5


@pytest.mark.parametrize("argv, message", [
    (["x", "--workers", "2"], "go with --ray"),
    (["x", "--video", "a.mp4"], "does not go with 'batch'"),
    (["x", "--ray", "--retries", "-1"], "--retries"),
])
def test_batch_option_errors(argv, message):
    args = batch_parser("t").parse_args(argv)
    with pytest.raises(UsageError, match=message):
        check_batch_options(args)


@pytest.fixture
def ray_session():
    """A real local Ray cluster (2 CPUs) for the test, shut down after it."""
    ray = pytest.importorskip("ray")
    repo = Path(cli.__file__).resolve().parents[1]
    # The workers import the repo's code, and the test venv's CUDA torchvision needs the CPU stub there too.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")])},
                          "worker_process_setup_hook": "cpu_torchvision.stub_registrations_if_needed"})
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_batch_retries_a_killed_worker_and_a_rerun_recomputes_nothing(models, clip, tmp_path, ray_session):
    from latentsync.cli_batch import batch_parser as parser
    from latentsync.cli_checks import check_numbers
    from latentsync.distributed.batch import run_batch

    folder = tmp_path / "clips"
    jobs_file = make_jobs(clip, folder, 3)
    args = parser("t").parse_args([str(jobs_file), "--ray", "--workers", "2", *tiny_args(models, "--no-cache")])
    args.batch = args.jobs
    apply_quality(args)
    check_numbers(args)
    jobs = cli.plan_jobs(args)
    events, killed = [], []

    def on_event(kind, **data):
        events.append((kind, data))
        started = [d for k, d in events if k == "job_started"]
        # The third job goes to a worker that has finished one already: it is running (models loaded) when killed.
        if kind == "job_started" and len(started) == 3 and not killed:
            killed.append((data["job"], data["worker"]))
            os.kill(data["worker"]["pid"], signal.SIGKILL)

    code = run_batch(args, jobs, use_ray=True, workers=2, retries=2, on_event=on_event)
    assert code == cli.EXIT_BATCH  # the broken input
    entries = manifest(folder)
    assert entries["broken"]["status"] == "failed"
    assert [entries[f"take{i}"]["status"] for i in range(3)] == ["done"] * 3
    (job, worker), = killed
    victim = entries[Path(job.video).stem]
    assert victim["attempts"] == 2 and victim["worker"] != worker["name"]
    assert any(k == "worker_died" for k, _ in events)
    assert len({d["worker"]["pid"] for k, d in events if k == "worker_started"}) == 3  # 2 + the replacement
    assert not list(folder.glob(".*partial*")), "the killed job's partial file was not cleaned up"
    first = outputs(folder)
    assert len(first) == 3

    events.clear()
    assert run_batch(args, jobs, use_ray=True, workers=2, retries=2, on_event=on_event) == cli.EXIT_BATCH
    assert not [k for k, _ in events if k in ("worker_started", "job_started")], "a rerun started work"
    assert outputs(folder) == first
    assert [manifest(folder)[f"take{i}"]["status"] for i in range(3)] == ["exists"] * 3


def test_ray_batch_ctrl_c_keeps_finished_outputs_and_leaves_no_partial(models, clip, tmp_path, ray_session):
    from latentsync.distributed.batch import run_batch

    folder = tmp_path / "clips"
    jobs_file = make_jobs(clip, folder, 2)
    args = batch_parser("t").parse_args([str(jobs_file), "--ray", "--workers", "1",
                                         *tiny_args(models, "--no-cache")])
    args.batch = args.jobs
    apply_quality(args)
    jobs = cli.plan_jobs(args)
    seen = []

    def on_event(kind, **data):
        # Ctrl-C in the driver while the second job is being worked on (its worker reported progress).
        if kind == "progress" and data["job"] is not None and Path(data["job"].video).stem == "take1":
            seen.append(data["state"])
            raise KeyboardInterrupt

    assert run_batch(args, jobs, use_ray=True, workers=1, on_event=on_event) == cli.EXIT_INTERRUPTED
    assert seen, "the second job never reported progress"
    assert (folder / "take0_lipsync.mp4").is_file() and not (folder / "take1_lipsync.mp4").exists()
    assert not list(folder.glob(".*partial*")), "the stopped job left its partial file"
    assert manifest(folder)["take0"]["status"] == "done" and "take1" not in manifest(folder)
