"""The standalone VAE loader reads both on-disk forms quietly: diffusers warned on every run (a cast it calls
risky for modules this VAE does not have, and `accelerate` missing), even with --quiet."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from latentsync.pipeline.compile_cache import CompileArtifacts
from latentsync.pipeline.compiled import compile_unavailable_reason, maybe_compile_vae
from latentsync.pipeline.vae import load_diffusers_vae
from latentsync.tiny_models import write_sd_vae_file, write_vae_folder

REPO = Path(__file__).resolve().parents[2]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def diffusers_warnings():
    """Warnings diffusers logs (its logger does not propagate, so caplog cannot see them)."""
    logger = logging.getLogger("diffusers")
    handler = _Records()
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


@pytest.mark.parametrize("form", ["single file", "diffusers folder"])
def test_vae_loads_in_the_requested_dtype_without_warnings(form, tmp_path, diffusers_warnings):
    path = write_sd_vae_file(tmp_path) if form == "single file" else write_vae_folder(tmp_path)
    vae = load_diffusers_vae(str(path), dtype=torch.float16)
    assert vae.dtype == torch.float16
    assert all(p.dtype == torch.float16 for p in vae.vae.parameters())
    warnings = [r.getMessage() for r in diffusers_warnings if r.levelno >= logging.WARNING]
    assert warnings == []


def test_faces_go_through_in_batches_of_the_pixel_budget(tmp_path):
    # 4 faces per call at 256 px and at least 2 at 512 px (the measured trade-offs), or the batch size asked for;
    # items are independent, so the moments and pixels equal one call over everything.
    vae = load_diffusers_vae(str(write_vae_folder(tmp_path)))
    assert vae._batch(256 * 256) == 4 and vae._batch(512 * 512) == 2
    vae.pixel_budget = 4 * 64 * 64  # the same rule on 64 px faces (4 per call, at least 2 at 128 px), 16x cheaper
    seen: list[int] = []
    for module in (vae.vae.encoder, vae.vae.decoder):
        module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    gen = torch.Generator().manual_seed(0)
    faces = torch.rand(10, 3, 64, 64, generator=gen) * 2 - 1
    mean, logvar = vae.encode_moments(faces)
    assert seen == [4, 4, 2]
    seen.clear()
    pixels = vae.decode(mean)
    assert seen == [4, 4, 2] and pixels.shape == faces.shape
    seen.clear()
    vae.encode_moments(torch.zeros(3, 3, 128, 128))
    assert seen == [2, 1]
    whole = load_diffusers_vae(str(write_vae_folder(tmp_path / "again")))
    whole.batch_size = 10
    torch.testing.assert_close(whole.encode_moments(faces)[0], mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(whole.decode(mean), pixels, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compiled_vae_pads_short_batches_and_matches_diffusers(tmp_path, mode):
    # Static shapes: the last, short batch (2 of 4 faces) is padded and cut back. Dynamo's eager backend runs the
    # same operations, so the compiled path must give diffusers' own moments and pixels (with CUDA graphs' mode the
    # outputs are copies: the same values).
    plain = load_diffusers_vae(str(write_vae_folder(tmp_path / "a")))
    compiled = load_diffusers_vae(str(write_vae_folder(tmp_path / "b")))
    compiled.compile(backend="eager", mode=mode)
    seen: list[int] = []
    compiled.vae.encoder.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    gen = torch.Generator().manual_seed(1)
    faces = torch.rand(6, 3, 256, 256, generator=gen) * 2 - 1  # 4 faces per call at 256 px: 4, then 2 padded to 4
    mean, logvar = compiled.encode_moments(faces)
    assert seen == [4, 4] and mean.shape[0] == 6
    want_mean, want_logvar = plain.encode_moments(faces)
    torch.testing.assert_close(mean, want_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar, want_logvar, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled.decode(mean), plain.decode(mean), rtol=1e-5, atol=1e-5)
    assert compiled.fallback_reason is None


def test_vae_compile_failure_falls_back_to_eager(tmp_path, caplog):
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    plain = load_diffusers_vae(str(write_vae_folder(tmp_path / "a")))
    vae = load_diffusers_vae(str(write_vae_folder(tmp_path / "b")))
    vae.compile(backend=broken)
    faces = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with caplog.at_level(logging.WARNING, logger="latentsync.pipeline.vae"):
        mean, _ = vae.encode_moments(faces)
    assert "no compiler here" in vae.fallback_reason and "runs uncompiled" in caplog.text
    torch.testing.assert_close(mean, plain.encode_moments(faces)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vae.decode(mean), plain.decode(mean), rtol=1e-5, atol=1e-5)


class _Kept(CompileArtifacts):
    """The real artifact files, plus a record of the graphs the adapter asked to keep."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def save(self, graph):
        self.asked.append(graph)
        return super().save(graph)


def test_compiled_vae_keeps_each_graph_once_per_shape(tmp_path):
    vae = load_diffusers_vae(str(write_vae_folder(tmp_path / "a")))
    kept = _Kept(tmp_path / "kernels", "probe", kind="vae")
    vae.compile(backend="eager", artifacts=kept)
    graphs = vae._graphs
    vae.compile(backend="eager")  # a second run's compile keeps the graphs and their artifacts
    assert vae._graphs is graphs and vae.artifacts is kept
    gen = torch.Generator().manual_seed(3)
    for n in (6, 3):  # 4 + 2 padded to 4, then 3 padded to 4: one shape each way
        mean, _ = vae.encode_moments(torch.rand(n, 3, 256, 256, generator=gen) * 2 - 1)
        vae.decode(mean)
    latent = "x".join(map(str, (4, *mean.shape[1:])))
    assert kept.asked == ["encoder-4x3x256x256", f"decoder-4x{latent[2:]}"]
    vae.encode_moments(torch.rand(2, 3, 128, 128, generator=gen) * 2 - 1)  # another resolution: its own graph
    assert kept.asked[-1] == "encoder-16x3x128x128"


@pytest.mark.skipif(compile_unavailable_reason("cpu") is not None, reason="no C++ compiler for Inductor's CPU kernels")
def test_maybe_compile_vae_compiles_diffusers_vaes_only(tmp_path):
    vae = load_diffusers_vae(str(write_vae_folder(tmp_path / "a")))
    assert maybe_compile_vae(vae, False, device="cpu") is vae and not vae.compiled
    assert maybe_compile_vae(vae, True, device="cpu", cache_dir=tmp_path / "k", keep_kernels=False) is vae
    assert vae.compiled and vae.artifacts is None
    half = load_diffusers_vae(str(write_vae_folder(tmp_path / "b")), dtype=torch.float16)
    maybe_compile_vae(half, True, device="cpu", cache_dir=tmp_path / "k", keep_kernels=True)
    assert half.artifacts.kind == "vae" and half.artifacts.directory == tmp_path / "k"
    full = load_diffusers_vae(str(write_vae_folder(tmp_path / "c")))
    maybe_compile_vae(full, True, device="cpu", cache_dir=tmp_path / "k", keep_kernels=True)
    assert full.artifacts.key != half.artifacts.key  # the dtype makes other kernels
    assert half.artifacts.path("encoder-4x3x256x256").name.startswith("vae-")

    class Other:  # ComfyUI's VAE in the nodes: left to ComfyUI
        compiled = False

    other = Other()
    assert maybe_compile_vae(other, True, device="cpu") is other


KEY_PROBE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from cpu_torchvision import stub_registrations_if_needed
    stub_registrations_if_needed()
    from latentsync.pipeline.compiled import vae_artifacts_for
    from latentsync.pipeline.vae import load_diffusers_vae
    vae = load_diffusers_vae(sys.argv[1])
    print(list(vae.vae.config.get("_use_default_values", [])))
    print(vae_artifacts_for(vae.vae, device="cpu", cache_dir=sys.argv[1]).key)
    """
)


def test_vae_kernel_key_is_the_same_in_every_process(tmp_path):
    # diffusers lists the config entries it defaulted in set order, which changes with the hash seed: a key built
    # from them named other files in every process, so kept VAE kernels were never found again
    folder = str(write_vae_folder(tmp_path))
    config = json.loads((Path(folder) / "config.json").read_text())
    (Path(folder) / "config.json").write_text(json.dumps({k: v for k, v in config.items()
                                                          if k not in ("act_fn", "sample_size", "force_upcast")}))
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        done = subprocess.run([sys.executable, "-c", KEY_PROBE, folder, str(REPO / "tests")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(done.stdout.strip().splitlines()[-2:])
    assert len({r[0] for r in runs}) > 1, "diffusers' defaulted entries came in one order: the probe proves nothing"
    assert len({r[1] for r in runs}) == 1
