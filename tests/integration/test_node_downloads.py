"""The loader node's download path without network: the real cause in its message, the VAE under its hub name,
and no ``.download`` / lock folders left in ComfyUI's models folder.

The pack is imported as ComfyUI imports it (a package named after its folder) in a fresh interpreter, beside
ComfyUI's own ``folder_paths`` pointed at a temporary models folder; downloads go to a closed port or to a local
server answering like the hub (huggingface_hub's real download code runs).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from comfy_env import ComfyUnavailable, comfy_python, find_comfy
from local_hub import LocalHub, closed_port, files_under

PACK_ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ("1.6/latentsync_unet.pt", "whisper/tiny.pt", "sd-vae-ft-mse.safetensors")

PROBE = r"""
import importlib.util, json, os, sys
root, comfy, models, mode = sys.argv[1:5]
sys.path.insert(0, comfy)
import folder_paths
folder_paths.models_dir = models
folder_paths.folder_names_and_paths["vae"] = ([os.path.join(models, "vae")], folder_paths.supported_pt_extensions)
spec = importlib.util.spec_from_file_location("ComfyUI_LatentSync_probe", os.path.join(root, "__init__.py"),
                                              submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pack
spec.loader.exec_module(pack)
loader = sys.modules["ComfyUI_LatentSync_probe.nodes.loader"]
names = json.loads(sys.argv[5])
try:
    if mode == "validate":
        loader._resolve_files(*names, True, check_only=True)  # what the loader checks before loading
        result = True
    else:
        result = loader._resolve_files(*names, True)
except Exception as exc:
    result = f"{type(exc).__name__}: {exc}"
print(json.dumps({"result": result}))
"""


@pytest.fixture(scope="module")
def comfy_tree() -> str:
    try:
        return str(find_comfy(comfy_python()))
    except ComfyUnavailable as exc:
        if os.environ.get("LATENTSYNC_SKIP_COMFY", "").strip() in ("1", "true", "yes"):
            pytest.skip(str(exc))
        pytest.fail(str(exc))


def _node(comfy_tree: str, models: Path, mode: str, env: dict[str, str]) -> object:
    full = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    full.update(env)
    proc = subprocess.run([comfy_python(), "-c", PROBE, str(PACK_ROOT), comfy_tree, str(models), mode,
                           json.dumps(OFFICIAL)], capture_output=True, text=True, timeout=120, env=full)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["result"]


def test_transformers_offline_is_named_not_hf_hub_offline(comfy_tree, tmp_path):
    message = _node(comfy_tree, tmp_path / "models", "validate", {"TRANSFORMERS_OFFLINE": "1"})
    assert isinstance(message, str) and "TRANSFORMERS_OFFLINE is set" in message
    assert "HF_HUB_OFFLINE" not in message


def test_no_network_is_named_when_the_prompt_is_validated(comfy_tree, tmp_path):
    port = closed_port()
    message = _node(comfy_tree, tmp_path / "models", "validate", {"HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert isinstance(message, str) and "no network" in message and f"127.0.0.1:{port}" in message
    assert not (tmp_path / "models" / "latentsync").exists() or not list(files_under(tmp_path / "models" / "latentsync"))


def test_the_vae_under_its_hub_name_is_used(comfy_tree, tmp_path):
    vae = tmp_path / "models" / "vae" / "diffusion_pytorch_model.safetensors"
    vae.parent.mkdir(parents=True)
    vae.write_bytes(b"vae")
    message = _node(comfy_tree, tmp_path / "models", "validate", {"HF_HUB_OFFLINE": "1"})
    assert "latentsync_unet.pt" in message and "tiny.pt" in message
    assert "sd-vae-ft-mse.safetensors" not in message  # found under the other accepted name


def test_a_failed_download_leaves_no_lock_folders(comfy_tree, tmp_path):
    models = tmp_path / "models"
    with LocalHub({}) as hub:
        message = _node(comfy_tree, models, "load", {"HF_ENDPOINT": hub.url})
        requested = list(hub.requests)
    assert "LatentSync model files are missing" in message and "downloading" in message
    assert any("latentsync_unet.pt" in path for _, path in requested)
    assert not (models / "latentsync").exists(), list(files_under(models))  # nothing left, not even folders
