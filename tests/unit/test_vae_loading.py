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
