"""Options are checked before any model loads: a bad one exits 2 at once, and ``--help`` shows the real defaults.

"No model loaded" is shown by giving unreadable model files and no network: had the command got as far as
loading, it would have exited 3 (the files cannot be read, the missing ones cannot be downloaded).
"""

from __future__ import annotations

import pytest

from cli_process import run_cli
from latentsync import cli
from local_hub import closed_port

GENEROUS_S = 30  # a refusal needs no model: seconds, where loading the real models took ~12 s before the check


@pytest.fixture
def garbage_models(tmp_path):
    """Model files that exist (so their options pass) but would fail to load."""
    folder = tmp_path / "garbage"
    folder.mkdir()
    files = {name: folder / name for name in ("unet.pt", "whisper.pt", "vae.safetensors")}
    for path in files.values():
        path.write_bytes(b"not a checkpoint")
    return ["--unet", str(files["unet.pt"]), "--whisper", str(files["whisper.pt"]), "--vae",
            str(files["vae.safetensors"]), "--models-dir", str(tmp_path / "models"), "--quiet"]


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")


def test_loading_garbage_would_exit_3(garbage_models, clip, tmp_path, no_network):
    """The control for the tests below: valid options get as far as loading, which fails with exit 3."""
    video, audio = clip
    code = cli.run(garbage_models + ["--video", str(video), "--audio", str(audio), "--output", str(tmp_path / "o.mp4"),
                                     "--device", "cpu"])
    assert code == cli.EXIT_MODELS
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("case", [
    "missing video", "missing audio", "output exists", "output folder missing", "steps", "face index", "batch chunks",
    "unknown device", "absent gpu", "missing unet", "missing batch", "video without audio",
])
def test_bad_options_exit_2_before_loading(case, garbage_models, clip, tmp_path, no_network, capsys):
    video, audio = clip
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"user data")
    pair = ["--video", str(video), "--audio", str(audio), "--output", str(tmp_path / "out.mp4")]
    args, expected = {
        "missing video": (["--video", str(tmp_path / "nope.mp4"), "--audio", str(audio)], "video file not found"),
        "missing audio": (["--video", str(video), "--audio", str(tmp_path / "nope.wav")], "audio file not found"),
        "output exists": (["--video", str(video), "--audio", str(audio), "--output", str(existing)], "--overwrite"),
        "output folder missing": (["--video", str(video), "--audio", str(audio), "--output",
                                   str(tmp_path / "no" / "such" / "o.mp4")], "folder does not exist"),
        "steps": (pair + ["--steps", "0"], "--steps must be a whole number from 1 to 200"),
        "face index": (pair + ["--face-index", "left"], "--face-index"),
        "batch chunks": (pair + ["--batch-chunks", "-1"], "--batch-chunks"),
        "unknown device": (pair + ["--device", "toaster"], "not a device name"),
        "absent gpu": (pair + ["--device", "cuda:99"], "cuda:99"),
        "missing unet": (pair + ["--unet", str(tmp_path / "nope.pt")], "--unet"),
        "missing batch": (["--batch", str(tmp_path / "no_such_folder")], "no such folder"),
        "video without audio": (["--video", str(video)], "go together"),
    }[case]
    code = cli.run(garbage_models + args)
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert expected in err
    assert "model files" not in err and "could not load" not in err
    assert existing.read_bytes() == b"user data"
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "models").exists()


@pytest.mark.parametrize("args", [["--detector", "foo"], ["--preset", "turbo"], ["--version", "2.0"]])
def test_choices_are_refused_by_the_parser(args, garbage_models, capsys):
    assert cli.run(garbage_models + args) == cli.EXIT_USAGE
    if args[0] == "--detector":
        err_text = capsys.readouterr().err
        assert all(name in err_text for name in ("auto", "insightface", "dlib"))


def test_a_refusal_is_fast_in_a_fresh_process(tmp_path, clip):
    """The reported case: --detector foo failed after ~12 s of loading with exit 4; a missing --video only after."""
    video, audio = clip
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    for args in (["--detector", "foo"], ["--video", str(tmp_path / "missing.mp4"), "--audio", str(audio)]):
        done = run_cli(args + ["--models-dir", str(tmp_path / "models")], cwd=tmp_path, env=env)
        assert done.code == cli.EXIT_USAGE, done.stderr
        assert done.seconds < GENEROUS_S, done.seconds
        assert "model files" not in done.stderr
    assert not (tmp_path / "models").exists()


def test_help_shows_the_real_defaults_and_the_detectors(tmp_path):
    models = tmp_path / "my-models"
    done = run_cli(["--help"], cwd=tmp_path, env={"LATENTSYNC_MODELS": str(models)})
    assert done.code == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps lines (also at hyphens)
    assert f"defaulthere:{models}" in "".join(done.stdout.split())
    assert "default 1.6" in text
    assert "{auto,insightface,offline,dlib}" in text  # dlib: the offline detector's older name, still accepted
    assert "python -m latentsync doctor" in text and "python -m latentsync selftest" in text
    assert "default 20" in text and "default 1247" in text
