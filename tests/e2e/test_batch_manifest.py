"""The batch manifest: every job with its status (done, no_face, failed, exists, cached), faces found and the
error; no-face videos are marked, and fail with --require-face; an output that is another job's input fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bad_inputs import encode_video
from latentsync import cli


def tiny_args(models, *extra: str) -> list[str]:
    return ["--unet", str(models["unet"]), "--whisper", str(models["whisper"]), "--vae", str(models["vae"]),
            "--models-dir", str(models["root"]), "--device", "cpu", "--detector", "dlib", "--no-download",
            "--steps", "1", "--preset", "ultrafast", "--quiet", *extra]


def make_folder(clip, folder: Path) -> None:
    """take1: a face; take2: noise (no face); take3: a broken file."""
    video, audio = clip
    folder.mkdir()
    shutil.copy(video, folder / "take1.mp4")
    encode_video(folder / "take2.mp4", np.random.RandomState(1).randint(0, 256, (8, 96, 96, 3), dtype=np.uint8))
    (folder / "take3.mp4").write_bytes(b"\0" * 512)
    for take in ("take1", "take2", "take3"):
        shutil.copy(audio, folder / f"{take}.wav")


def manifest_of(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {Path(job["video"]).stem: job for job in data["jobs"]} | {"_counts": data["counts"]}


def test_manifest_marks_done_no_face_and_failed(models, clip, tmp_path, capsys):
    folder = tmp_path / "clips"
    make_folder(clip, folder)
    assert cli.run(tiny_args(models, "--batch", str(folder))) == cli.EXIT_BATCH
    jobs = manifest_of(folder / "latentsync_manifest.json")
    assert jobs["take1"]["status"] == "done" and jobs["take1"]["face_frames"] == jobs["take1"]["frames"] > 0
    assert jobs["take2"]["status"] == "no_face" and jobs["take2"]["face_frames"] == 0
    assert "NO FACE" in jobs["take2"]["message"]
    assert jobs["take3"]["status"] == "failed" and "take3.mp4" in jobs["take3"]["message"]
    assert (folder / "take2_lipsync.mp4").is_file()  # passed through unchanged, and said so
    out = capsys.readouterr().out
    assert "NO FACE" in out and "1 done, 1 no_face, 1 failed" in out  # printed even under --quiet

    # A rerun keeps the finished outputs and marks them; --require-face turns the no-face job into a failure.
    (folder / "take2_lipsync.mp4").unlink()
    assert cli.run(tiny_args(models, "--batch", str(folder), "--require-face")) == cli.EXIT_BATCH
    jobs = manifest_of(folder / "latentsync_manifest.json")
    assert jobs["take1"]["status"] == "exists"
    assert jobs["take2"]["status"] == "failed" and "--require-face" in jobs["take2"]["message"]
    assert not (folder / "take2_lipsync.mp4").exists()


def test_an_output_that_is_another_jobs_input_fails_that_job_only(models, clip, tmp_path):
    video, audio = clip
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    shutil.copy(video, first)
    shutil.copy(video, second)
    before = second.read_bytes()
    listing = tmp_path / "jobs.txt"
    listing.write_text(f"{first}\t{audio}\t{second}\n{second}\t{audio}\t{tmp_path / 'fine.mp4'}\n")
    assert cli.run(tiny_args(models, "--batch", str(listing), "--overwrite")) == cli.EXIT_BATCH
    assert second.read_bytes() == before
    jobs = json.loads((tmp_path / "jobs.txt.manifest.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "done"]
    assert "written over" in jobs[0]["message"]


def test_manifest_never_replaces_a_file_that_is_not_one(models, clip, tmp_path):
    folder = tmp_path / "clips"
    make_folder(clip, folder)
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "data"}')
    assert cli.run(tiny_args(models, "--batch", str(folder), "--manifest", str(mine))) == cli.EXIT_USAGE
    assert mine.read_text() == '{"my": "data"}'
