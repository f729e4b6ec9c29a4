"""Compiled kernels survive the process: a second process loads the first one's artifacts and hits the cache.

Real torch.compile (Inductor, CPU kernels) on two small functions (as the U-Net's full and DeepCache steps), each
side in its own process with its own empty Inductor folder, so only the saved artifact files can carry the
compiles across. Both graphs must hit: one file holding two saves kept only the last graph.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from latentsync.pipeline.compile_cache import CompileArtifacts, default_cache_dir, setup_key
from latentsync.pipeline.compiled import compile_unavailable_reason

REPO = Path(__file__).resolve().parents[2]

SIDE = textwrap.dedent(
    """
    import json, sys, torch
    from torch._dynamo.utils import counters
    from torch.compiler._cache import CacheArtifactManager
    from latentsync.pipeline.compile_cache import CompileArtifacts

    def held():  # artifacts in PyTorch's process-wide store
        return len(CacheArtifactManager._seen_artifacts)

    def stamps():
        return [artifacts.path(g).stat().st_mtime_ns if artifacts.path(g).is_file() else None for g in ("full", "cached")]

    artifacts = CompileArtifacts(sys.argv[1], "probe")
    loaded = artifacts.load()
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 16, generator=g), torch.randn(16, 4, generator=g)
    other = torch.compile(lambda x, w: torch.sigmoid(x @ w).mean(-1))  # someone else's compile, before ours
    other(x, w)
    held_before = held()
    full = torch.compile(lambda x, w: torch.nn.functional.gelu(x @ w).sum(-1))
    cached = torch.compile(lambda x, w: torch.tanh(x @ w).amax(-1))
    with artifacts.first_run("full"):
        out = full(x, w)
    after_first = stamps()
    with artifacts.first_run("full"):  # a later run of the same graph writes nothing
        out = full(x, w)
    with artifacts.first_run("cached"):
        out = out + cached(x, w)
    print(json.dumps({"loaded": sorted(artifacts.loaded_graphs), "stamps": [after_first, stamps()],
                      "hits": counters["inductor"]["fxgraph_cache_hit"], "out": out.tolist(),
                      "held_before": held_before, "held_after": held()}))
    """
)


def run_side(cache_dir: Path, inductor_dir: Path) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(inductor_dir), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SIDE, str(cache_dir)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(compile_unavailable_reason("cpu") is not None, reason="no C++ compiler for Inductor's CPU kernels")
def test_second_process_hits_the_first_ones_kernels(tmp_path):
    first = run_side(tmp_path / "kernels", tmp_path / "inductor-a")
    assert first["loaded"] == [] and first["hits"] == 0
    (full_after_first, cached_after_first), (full_end, cached_end) = first["stamps"]
    assert full_after_first is not None and cached_after_first is None  # saved after its own first run
    assert full_end == full_after_first and cached_end is not None  # not again after its second
    # our graphs' records were set aside and dropped; the compile before ours is still in PyTorch's store
    assert first["held_before"] > 0 and first["held_after"] == first["held_before"]
    second = run_side(tmp_path / "kernels", tmp_path / "inductor-b")
    assert second["loaded"] == ["cached", "full"]
    assert second["hits"] == 2, "a graph compiled from scratch in the second process"
    assert second["stamps"][1] == first["stamps"][1]  # loaded graphs are not written again
    assert second["out"] == first["out"]
    names = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert names == ["unet-probe-cached.bin", "unet-probe-full.bin"]  # no partial files left
    full_keys, cached_keys = (file_keys(tmp_path / "kernels" / name) for name in ("unet-probe-full.bin",
                                                                                  "unet-probe-cached.bin"))
    assert full_keys and cached_keys and not full_keys & cached_keys  # each file holds its own graph


def file_keys(path: Path) -> set:
    """The artifact keys one file holds (read without loading them into the caches)."""
    from torch.compiler._cache import CacheArtifactManager

    artifacts = CacheArtifactManager.deserialize(path.read_bytes())
    return {(kind, a.key) for kind, items in artifacts.items() for a in items}


def test_a_damaged_file_is_ignored(tmp_path, caplog):
    artifacts = CompileArtifacts(tmp_path, "broken")
    artifacts.path("full").parent.mkdir(parents=True, exist_ok=True)
    artifacts.path("full").write_bytes(b"not a cache")
    with caplog.at_level("WARNING"):
        assert artifacts.load() is False
    assert "Ignoring the compiled-kernel cache" in caplog.text
    assert artifacts.path("full").read_bytes() == b"not a cache"


def test_setup_key_separates_what_makes_kernels_differ():
    base = dict(config={"block_out_channels": [320, 640]}, device="cpu", dtype=torch.float16, frames=16, batch=2)
    key = setup_key(**base)
    assert key == setup_key(**base)
    for change in ({"dtype": torch.bfloat16}, {"frames": 8}, {"batch": 1}, {"config": {"block_out_channels": [32]}}):
        assert setup_key(**{**base, **change}) != key, change


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTSYNC_COMPILE_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LATENTSYNC_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform != "win32":
        assert default_cache_dir() == tmp_path / "xdg" / "latentsync" / "compile"
    json.dumps(str(default_cache_dir()))
