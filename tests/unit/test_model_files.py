"""Model file lookup, the offline messages, and downloads through huggingface_hub's real code against a local
server standing in for the hub (no network)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from latentsync import hub
from latentsync import model_files as mf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from local_hub import LocalHub, closed_port, files_under, resolve_path  # noqa: E402


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


@pytest.fixture
def hub_at(monkeypatch):
    """Point downloads at a local server speaking the hub's resolve route (huggingface_hub's real download runs)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    hub.forget_checks()  # a port refused earlier in the session may now be this server's

    def start(files: dict[str, bytes]) -> LocalHub:
        server = LocalHub(files).__enter__()
        stack.append(server)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        return server

    stack: list[LocalHub] = []
    yield start
    for server in stack:
        server.__exit__(None, None, None)


def test_download_is_verified_and_moved_into_place_leaving_nothing_behind(tmp_path, hub_at):
    payload = b"weights" * 100
    digest = hashlib.sha256(payload).hexdigest()
    hub_at({resolve_path("org/repo", "sub/file.bin", "abc"): payload,
            resolve_path("org/repo", "sub/other.bin"): b"tampered"})
    root = tmp_path / "models"
    good = mf.ModelFile("k", "org/repo", "sub/file.bin", "latentsync/x", revision="abc", sha256=digest, size=700)
    path = mf.ensure_files([good], str(root))["k"]
    assert path == good.dest(str(root)) and open(path, "rb").read() == payload
    assert sorted(files_under(root / "latentsync" / "x")) == ["file.bin"]  # no staging folder, no lock file

    bad = mf.ModelFile("b", "org/repo", "sub/other.bin", "latentsync/x", sha256="0" * 64)
    with pytest.raises(mf.ModelFilesMissing, match="sha256"):
        mf.ensure_files([bad], str(root))
    assert sorted(files_under(root / "latentsync" / "x")) == ["file.bin"]  # the bad copy and its staging are gone


def test_a_failed_download_reports_every_file_still_missing_and_leaves_no_lock(tmp_path, hub_at):
    server = hub_at({})  # the hub answers, but has none of the files (404)
    root = tmp_path / "models"
    specs = [mf.WHISPER_TINY, mf.VAE_FT_MSE]
    with pytest.raises(mf.ModelFilesMissing) as err:
        mf.ensure_files(specs, str(root))
    text = str(err.value)
    assert "tiny.pt" in text and server.url in text
    assert all(spec.dest(str(root)) in text for spec in specs)  # the second file was not tried, but is listed
    assert len([r for r in server.requests if "sd-vae-ft-mse" in r[1]]) == 0
    assert not root.exists(), list(files_under(root))  # no lock, no staging, not even the folders it made


def test_no_network_fails_at_once_without_touching_the_models_folder(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(mf.ModelFilesMissing, match="no network") as err:
        mf.ensure_files([mf.UNET_FILES["1.6"], mf.WHISPER_TINY], str(tmp_path / "models"))
    assert len(err.value.missing) == 2
    assert not (tmp_path / "models").exists()


def test_transformers_offline_is_named_as_the_cause(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with pytest.raises(mf.ModelFilesMissing) as err:
        mf.ensure_files([mf.WHISPER_TINY], str(tmp_path))
    assert "TRANSFORMERS_OFFLINE is set" in str(err.value) and "HF_HUB_OFFLINE" not in str(err.value)
    # huggingface_hub reads TRANSFORMERS_OFFLINE only when HF_HUB_OFFLINE is unset: "0" there wins.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.offline_variable() is None


def test_the_vae_is_found_under_its_hub_name_too(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for alias in ("diffusion_pytorch_model.safetensors", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors"):
        root = tmp_path / alias.replace("/", "_")
        path = root / "vae" / alias
        path.parent.mkdir(parents=True)
        path.write_bytes(b"vae")
        assert mf.ensure_files([mf.VAE_FT_MSE], str(root)) == {mf.VAE_FT_MSE.key: str(path)}


def test_insightface_files_only_for_the_insightface_detector(tmp_path):
    mf.ensure_detector_files("auto", [str(tmp_path)], allow_download=False)  # auto never downloads
    with pytest.raises(mf.ModelFilesMissing) as err:
        mf.ensure_detector_files("insightface", [str(tmp_path)], allow_download=False)
    assert "det_10g.onnx" in str(err.value) and "2d106det.onnx" in str(err.value)
    assert "insightface/models/buffalo_l" in str(err.value)
