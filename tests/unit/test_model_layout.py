"""The model-file layout is written once (latentsync/model_files.py): the loader node's description and the editor
read it from there, the ComfyUI folder name agrees, and the README's table names every file where it goes."""

from __future__ import annotations

import re
from pathlib import Path

from latentsync import model_files
from latentsync.metrics.files import S3FD_FACE, STABLE_SYNCNET, SYNCNET_V2

REPO = Path(__file__).resolve().parents[2]
SPECS = [*model_files.UNET_FILES.values(), model_files.WHISPER_TINY, model_files.VAE_FT_MSE, SYNCNET_V2, S3FD_FACE,
         STABLE_SYNCNET]


def test_layout_lines_name_every_file_where_it_goes():
    text = "\n".join(model_files.layout_lines())
    for spec in SPECS:
        assert f"{spec.subdir}/{spec.dest_name}" in text


def test_readme_table_agrees_with_the_model_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for spec in SPECS:
        assert f"`models/{spec.subdir}/{spec.dest_name}`" in readme, spec.key
        assert spec.repo_id in readme, spec.key


def test_nodes_and_editor_take_the_layout_from_the_library():
    paths_py = (REPO / "nodes" / "paths.py").read_text(encoding="utf-8")
    assert re.search(r'^FOLDER = "([^"]+)"', paths_py, re.M).group(1) == model_files.COMFY_FOLDER
    assert "latentsync_unet.pt" not in paths_py  # derived from model_files, not written again
    js = (REPO / "web" / "latentsync.js").read_text(encoding="utf-8")
    assert "latentsync_unet.pt" not in js and "tiny.pt" not in js
    loader = (REPO / "nodes" / "loader.py").read_text(encoding="utf-8")
    heading = re.search(r'^MODEL_FILES_HEADING = "([^"]+)"', loader, re.M).group(1)
    assert f'const MODEL_FILES_HEADING = "{heading}"' in js


def test_name_in_folder():
    assert model_files.name_in_folder(model_files.UNET_FILES["1.6"]) == "1.6/latentsync_unet.pt"
    assert model_files.name_in_folder(model_files.VAE_FT_MSE, "vae") == "sd-vae-ft-mse.safetensors"
