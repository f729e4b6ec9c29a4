"""The standalone VAE loader reads both on-disk forms quietly: diffusers warned on every run (a cast it calls
risky for modules this VAE does not have, and `accelerate` missing), even with --quiet."""

from __future__ import annotations

import logging

import pytest
import torch

from latentsync.pipeline.vae import load_diffusers_vae
from latentsync.tiny_models import write_sd_vae_file, write_vae_folder


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


def test_compiled_vae_pads_short_batches_and_matches_diffusers(tmp_path):
    # Static shapes: the last, short batch (2 of 4 faces) is padded and cut back. Dynamo's eager backend runs the
    # same operations, so the compiled path must give diffusers' own moments and pixels.
    plain = load_diffusers_vae(str(write_vae_folder(tmp_path / "a")))
    compiled = load_diffusers_vae(str(write_vae_folder(tmp_path / "b")))
    compiled.compile(backend="eager")
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
