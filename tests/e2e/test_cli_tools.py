"""``latentsync doctor`` (what is installed and every model file, present or missing) and ``latentsync selftest``
(the whole pipeline on tiny random models, no download). Its speed (about 10 s on an idle 2-core CPU, the
requirement is under a minute) is measured by hand, not here: a shared CI machine makes wall time meaningless."""

from __future__ import annotations

import hashlib

from cli_process import run_cli
from latentsync import cli
from latentsync.model_files import UNET_FILES
from latentsync.tiny_models import write_whisper
from local_hub import closed_port

def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_doctor_names_present_and_missing_files(tmp_path):
    models = tmp_path / "models"
    whisper = write_whisper(models / "latentsync", width=32)
    whisper = whisper.rename(models / "latentsync" / "whisper" / "tiny.pt")
    vae = models / "vae" / "diffusion_pytorch_model.safetensors"  # the VAE under its Hugging Face name
    vae.parent.mkdir(parents=True)
    vae.write_bytes(b"vae bytes")
    done = run_cli(["doctor", "--models-dir", str(models)], cwd=tmp_path,
                   env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"})
    out = done.stdout
    assert done.code == 1, out + done.stderr  # files missing and no network: a run cannot work
    assert f"models folder {models} (--models-dir)" in out
    for path in (whisper, vae):
        line = next(line for line in out.splitlines() if str(path) in line)
        assert line.split()[0] == "ok" and f"{path.stat().st_size:,} bytes" in line and _sha(path) in line
    for version in ("1.5", "1.6"):
        line = next(line for line in out.splitlines() if UNET_FILES[version].note in line)
        assert line.split()[0] == "missing" and str(models / "latentsync" / version / "latentsync_unet.pt") in line
    assert "no network" in out and "cannot be downloaded now" in out
    assert "torch " in out and "PyAV " in out and "dlib landmark model" in out
    assert "insightface det_10g.onnx" in out


def test_doctor_passes_when_every_file_is_there(tmp_path):
    models = tmp_path / "models"
    for rel in ("latentsync/1.5/latentsync_unet.pt", "latentsync/1.6/latentsync_unet.pt",
                "latentsync/whisper/tiny.pt", "vae/sd-vae-ft-mse.safetensors"):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(rel.encode())
    done = run_cli(["doctor", "--models-dir", str(models), "--no-hash"], cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert done.code == 0, done.stdout + done.stderr
    assert "--version 1.6: every file is present" in done.stdout
    assert "HF_HUB_OFFLINE is set" in done.stdout  # reported, but nothing needs a download
    assert "sha256" not in done.stdout


def test_selftest_passes_without_any_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")  # any download attempt would fail
    out = tmp_path / "selftest.mp4"
    code = cli.run(["selftest", "--device", "cpu", "--output", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "selftest PASSED" in printed
    assert out.is_file() and out.stat().st_size > 10_000


def test_selftest_refuses_an_existing_output(tmp_path):
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"user data")
    assert cli.run(["selftest", "--output", str(out)]) == cli.EXIT_USAGE
    assert out.read_bytes() == b"user data"
