"""Model file lookup, the offline message, and download verification (no network: huggingface_hub's download
is replaced by a local copy standing in for the hub)."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from latentsync import model_files as mf


def test_existing_files_are_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dest = mf.WHISPER_TINY.dest(str(tmp_path))
    (tmp_path / "latentsync" / "whisper").mkdir(parents=True)
    open(dest, "wb").write(b"x")
    assert mf.ensure_files([mf.WHISPER_TINY], str(tmp_path)) == {mf.WHISPER_TINY.key: dest}


def test_offline_message_lists_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    specs = [mf.UNET_FILES["1.6"], mf.WHISPER_TINY, mf.VAE_FT_MSE]
    with pytest.raises(mf.ModelFilesMissing) as err:
        mf.ensure_files(specs, str(tmp_path))
    text = str(err.value)
    assert "HF_HUB_OFFLINE" in text
    for spec in specs:
        assert spec.dest(str(tmp_path)) in text and spec.url in text
    assert len(err.value.missing) == 3


def test_downloads_off_is_reported_as_such(tmp_path):
    with pytest.raises(mf.ModelFilesMissing, match="downloads are turned off"):
        mf.ensure_files([mf.WHISPER_TINY], str(tmp_path), allow_download=False)


def _fake_hub(source):
    def hf_hub_download(repo_id, filename, revision=None, local_dir=None):
        target = f"{local_dir}/{filename}"
        import os

        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(source, target)
        return target

    return hf_hub_download


def test_download_is_verified_and_moved_into_place(tmp_path, monkeypatch):
    import huggingface_hub

    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"weights" * 100)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fake_hub(payload))
    root = tmp_path / "models"
    good = mf.ModelFile("k", "org/repo", "sub/file.bin", "latentsync/x", revision="abc", sha256=digest, size=700)
    path = mf.ensure_files([good], str(root))["k"]
    assert path == good.dest(str(root)) and open(path, "rb").read() == payload.read_bytes()

    bad = mf.ModelFile("b", "org/repo", "sub/other.bin", "latentsync/x", sha256="0" * 64)
    with pytest.raises(mf.ModelFilesMissing, match="sha256"):
        mf.ensure_files([bad], str(root))
    assert not (root / "latentsync" / "x" / "other.bin").exists()
    assert not list((root / "latentsync" / "x").rglob("other.bin"))  # the bad staging copy is gone too


def test_insightface_files_only_for_the_insightface_detector(tmp_path):
    mf.ensure_detector_files("auto", [str(tmp_path)], allow_download=False)  # auto never downloads
    with pytest.raises(mf.ModelFilesMissing) as err:
        mf.ensure_detector_files("insightface", [str(tmp_path)], allow_download=False)
    assert "det_10g.onnx" in str(err.value) and "2d106det.onnx" in str(err.value)
    assert "insightface/models/buffalo_l" in str(err.value)
