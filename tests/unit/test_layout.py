"""The architecture's rules, read from the source: one place for the latent units, models that load themselves,
the stage API behind the nodes and the runner, and the reserved packages empty."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGE_NODES = ("sampler.py", "vae_encode.py", "vae_decode.py", "face_align.py")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_latent_scaling_lives_in_the_vae_adapter_only():
    users = [p.relative_to(ROOT).as_posix() for p in python_files("latentsync", "nodes")
             if "VAE_SCALING_FACTOR" in p.read_text() or "0.18215" in p.read_text()]
    users = [u for u in users if not u.startswith("latentsync/metrics/")]  # SyncNet's own latents, not ours
    assert sorted(users) == ["latentsync/configs.py", "latentsync/pipeline/vae.py"], users


def called_names(path: Path) -> set[str]:
    """Attribute and function names called anywhere in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def loads_of_model_patchers(path: Path) -> list[int]:
    """Lines where ``path`` hands ``model.unet`` / ``model.whisper`` (LATENTSYNC_MODEL's patchers) to load_models."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "load_models":
            for arg in ast.walk(node):
                if (isinstance(arg, ast.Attribute) and arg.attr in ("unet", "whisper")
                        and isinstance(arg.value, ast.Name) and arg.value.id in ("model", "self")):
                    lines.append(node.lineno)
    return lines


def test_nodes_leave_loading_the_latentsync_model_to_the_model():
    """load_models_gpu for LATENTSYNC_MODEL's patchers is called by the model itself (nodes/types.py)."""
    for path in python_files("nodes"):
        if path.name != "types.py":
            assert not loads_of_model_patchers(path), f"{path.name}: use model.load_unet / load_whisper / load_all"
    assert loads_of_model_patchers(ROOT / "nodes" / "types.py")  # the check can see such a call


def test_the_nodes_and_the_runner_use_the_stage_api():
    uses = {name: "pipeline import stages" in (ROOT / "nodes" / name).read_text() for name in STAGE_NODES}
    assert all(uses.values()), uses
    runner = ROOT / "latentsync" / "pipeline" / "runner.py"
    assert {"encode", "decode", "composite", "align_faces", "face_matrices", "audio_windows"} <= called_names(runner)
    assert not (ROOT / "latentsync" / "pipeline" / "lipsync.py").exists()  # the second orchestration is gone


@pytest.mark.parametrize("package", ["latentsync.data", "latentsync.train", "latentsync.distributed"])
def test_reserved_packages_say_what_goes_there_and_hold_no_code(package):
    module = importlib.import_module(package)
    assert module.__doc__ and "goes here" in module.__doc__
    body = ast.parse(Path(module.__file__).read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr)  # the docstring alone


def writes_into_model(path: Path) -> list[int]:
    """Lines where ``path`` assigns into ``model.<x>`` / ``model.<x>[...]`` or calls ``setattr``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            base = target.value if isinstance(target, ast.Subscript) else target
            if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "model":
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
            lines.append(node.lineno)
    return lines


def test_no_node_writes_into_the_cached_model(tmp_path):
    """LATENTSYNC_MODEL sits in ComfyUI's output cache: its own methods keep its caches (detectors, compiled
    U-Nets), nodes only read it."""
    for path in python_files("nodes"):
        if path.name != "types.py":
            assert not writes_into_model(path), f"{path.name}: lines {writes_into_model(path)}"
    probe = tmp_path / "old_get_detector.py"  # what get_detector did
    probe.write_text("def f(model, name, detector):\n    model.detectors[name] = detector\n")
    assert writes_into_model(probe) == [2]
