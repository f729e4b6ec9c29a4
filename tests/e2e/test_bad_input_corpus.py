"""The bad-input corpus (tests/bad_inputs.py) through the real command line: per case the exit code, a message that
names the input and the fix, no traceback, no crash, no input changed and nothing written outside the output
folder (the job cache lives in its own temporary folder). The cases run in one child process (corpus_child.py), so
Python and torch start once; when a case crashes the process (a native decoder), it is recorded as crashed and a new
child goes on with the next case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs import CASES, EXIF_UPRIGHT, BaseMedia, snapshot, write_case
from latentsync.io.video import probe_video
from latentsync.tiny_models import write_whisper

CHILD = Path(__file__).resolve().with_name("corpus_child.py")
TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, media, models):
    """Write every case, run them all through the command line in one child process, return what happened."""
    root = tmp_path_factory.mktemp("corpus")
    base = BaseMedia.build(media, root / "base")
    wrong_whisper = write_whisper(root / "whisper256", 256)
    common = ["--unet", str(models["unet"]), "--whisper", str(models["whisper"]), "--vae", str(models["vae"]),
              "--models-dir", str(models["root"]), "--steps", "1", "--device", "cpu", "--detector", "dlib",
              "--no-download", "--quiet", "--preset", "ultrafast"]
    plan, cases = [], {}
    for case in CASES:
        folder = root / "cases" / case.name
        argv, named, output = write_case(case, folder, base)
        argv = [x for a in argv for x in (["--whisper", str(wrong_whisper)] if a == "@whisper256" else [a])]
        cases[case.name] = {"folder": folder, "named": named, "output": output, "before": snapshot(folder / "in")}
        plan.append({"name": case.name, "argv": common + argv, "cwd": str(folder / "out")})
    return {"results": run_children(plan, root), "cases": cases}


def run_children(plan: list[dict], root) -> dict:
    """Run the plan in a child process; when one dies in a case (a crash), note it and go on with the next."""
    results: dict = {}
    env = dict(os.environ, LATENTSYNC_CACHE_DIR=str(root / "job_cache"), OMP_NUM_THREADS="2")
    remaining = list(plan)
    while remaining:
        (root / "plan.json").write_text(json.dumps(remaining))
        results_path = root / f"results_{len(results)}.jsonl"
        proc = subprocess.run([sys.executable, str(CHILD), str(root / "plan.json"), str(results_path)],
                              capture_output=True, text=True, timeout=1200, env=env)
        started = None
        for line in results_path.read_text().splitlines() if results_path.exists() else []:
            entry = json.loads(line)
            if entry.get("started"):
                started = entry["name"]
            else:
                results[entry["name"]] = entry
        if started is not None and started not in results:  # the child died in this case
            results[started] = {"crashed": proc.returncode, "stderr": proc.stderr[-3000:]}
        remaining = [case for case in remaining if case["name"] not in results]
        if proc.returncode == 0 or started is None:  # finished, or died before starting any case
            break
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_answers_every_bad_input(case, corpus):
    result = corpus["results"].get(case.name)
    assert result is not None, f"{case.name} never ran"
    assert "crashed" not in result, f"the command line crashed (exit {result.get('crashed')}):\n{result['stderr']}"
    info = corpus["cases"][case.name]
    text = (result["stdout"] + result["stderr"]).lower()
    assert not result["escaped"], result["escaped"]
    assert TRACEBACK.lower() not in text, result["stderr"]
    assert result["code"] == case.cli_exit, (result["code"], result["stderr"], result["stdout"])
    if case.cli_says:  # something to say: it names the input (a file or an option) and the fix
        assert info["named"].lower() in text, f"the message does not name {info['named']!r}: {text}"
    for fragment in case.cli_says:
        assert fragment.lower() in text, f"{fragment!r} missing from: {text}"
    # No input changed (links included), nothing new beside the inputs, nothing outside the output folder.
    assert snapshot(info["folder"] / "in") == info["before"]
    outside = [p for p in info["folder"].iterdir() if p.name not in ("in", "out")]
    assert outside == []
    written = sorted(p.name for p in (info["folder"] / "out").iterdir())
    output = info["output"]
    if case.writes:
        assert written == [output.name], written
        assert probe_video(str(output)).num_frames > 0
        assert str(output) in result["stdout"], "every finished job prints its summary line, even under --quiet"
    else:
        assert written == [], written


def test_no_face_is_said_on_stdout_even_when_quiet(corpus):
    for name in ("no_face_noise", "no_face_landscape", "no_face_1x1_video", "face_index_7_of_1"):
        result = corpus["results"][name]
        assert "NO FACE" in result["stdout"], (name, result["stdout"])
        assert "WARNING" in result["stderr"]


def test_exif_orientation_is_applied_and_the_face_found(corpus):
    result = corpus["results"]["image_exif_rotated"]
    info = probe_video(str(corpus["cases"]["image_exif_rotated"]["output"]))
    assert (info.width, info.height) == EXIF_UPRIGHT  # read as stored it would be 256x320, the face on its side
    assert "NO FACE" not in result["stdout"] and "without a usable face" not in result["stdout"], result["stdout"]


def test_truncated_video_uses_the_frames_that_decode(corpus):
    output = corpus["cases"]["video_truncated_faststart"]["output"]
    info = probe_video(str(output))
    assert info.num_frames == 8  # the speech's length, the decodable frames played back and forth
    assert "could be decoded" in corpus["results"]["video_truncated_faststart"]["stdout"]
