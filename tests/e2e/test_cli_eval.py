"""``latentsync eval --real DIR --fake DIR``: the JSON report and the Markdown table on real clips with tiny random
models (LSE-C/LSE-D, StableSyncNet accuracy, PSNR/SSIM outside the face, FVD named as left out), bad folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sync_media  # noqa: E402
from cli_process import run_cli  # noqa: E402

from latentsync.exit_codes import EXIT_INPUT, EXIT_OK, EXIT_USAGE  # noqa: E402

FRAMES = 40
FIXTURE_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "sync" / "stable_syncnet_config.json"


@pytest.fixture(scope="module")
def folders(tmp_path_factory, media):
    """real/face.mp4 (demo1's face with its speech) and fake/face.mp4: the same with the mouth area painted over;
    both lossless, so every pixel outside the face is equal. Tiny SyncNet v2, S3FD and StableSyncNet files."""
    root = tmp_path_factory.mktemp("eval")
    frames = sync_media.face_frames(media, FRAMES)
    speech = sync_media.speech(media, FRAMES)
    (root / "real").mkdir()
    (root / "fake").mkdir()
    sync_media.write_video(root / "real" / "face.mp4", frames, wav16k=speech, lossless=True)
    fake = frames.copy()
    fake[:, 400:470, 180:290] = 40  # a "mouth" inside the face region of the random track that spans every frame
    sync_media.write_video(root / "fake" / "face.mp4", fake, wav16k=speech, lossless=True)
    config = json.loads(FIXTURE_CONFIG.read_text())
    config["data"] = {"num_frames": 16, "resolution": 32, "lower_half": True}
    (root / "stable.json").write_text(json.dumps(config))
    sync_media.metric_models(root / "models", stable_config=config)
    return root


def test_report_and_table(folders):
    root = folders
    done = run_cli(["eval", "--real", "real", "--fake", "fake", "--json", "report.json", "--markdown", "table.md",
                    "--models-dir", "models", "--no-download", "--device", "cpu", "--min-track", "20",
                    "--stable-config", "stable.json"], root)
    assert done.code == EXIT_OK, done.stderr
    report = json.loads((root / "report.json").read_text())
    fake = report["fake"]["summary"]
    assert fake["videos"] == 1 and fake["scorable"] == 1
    assert isinstance(fake["lse_c"], float) and isinstance(fake["lse_d"], float)
    assert 0.0 <= fake["syncnet_accuracy"] <= 1.0 and fake["accuracy_pairs"] == 4
    assert fake["psnr_outside_face"] == "inf" and fake["psnr_infinite"] == 1 and fake["ssim_outside_face"] == 1.0
    video = report["fake"]["videos"][0]
    assert video["name"] == "face" and video["pixels_compared"] > 0
    assert report["fvd"] is None and "weights_only" in report["fvd_note"]
    assert report["real"]["summary"]["psnr_outside_face"] is None
    table = (root / "table.md").read_text()
    assert table.strip() in done.stdout
    assert "| fake (fake) | 1/1 |" in table and "| ∞ | 1.0000 |" in table and "FVD not computed" in table


def test_without_stable_syncnet_and_bad_folders(folders, tmp_path):
    root = folders
    models = tmp_path / "models"
    sync_media.metric_models(models)  # no stable_syncnet.pt: accuracy is skipped and said so
    (tmp_path / "empty").mkdir()
    common = ["--models-dir", str(models), "--no-download", "--device", "cpu"]
    done = run_cli(["eval", "--real", "real", "--fake", str(tmp_path / "empty")] + common, root)
    assert done.code == EXIT_INPUT and "same-stem" in done.stderr
    done = run_cli(["eval", "--real", "real", "--fake", str(tmp_path / "nope")] + common, root)
    assert done.code == EXIT_USAGE and "not a folder" in done.stderr
    done = run_cli(["eval", "--real", "real", "--fake", "fake"] + common, root)  # min_track 50: not scorable
    assert done.code == EXIT_OK, done.stderr
    assert "SyncNet accuracy not computed" in done.stdout and "| fake (fake) | 0/1 |" in done.stdout
