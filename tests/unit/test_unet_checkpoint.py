"""U-Net checkpoint loading on tiny random checkpoints written in the real on-disk formats."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentsync.configs import unet_config
from latentsync.models.checkpoint import CheckpointError
from latentsync.models.layers import temporal_position_table
from latentsync.models.unet import UNet3DConditionModel, load_unet, unet_state_dict_shapes
from latentsync.tiny_models import tiny_unet_config

REPO_ROOT = Path(__file__).resolve().parents[2]
PE = ".pos_encoder.pe"


@pytest.fixture(scope="module")
def source() -> tuple[UNet3DConditionModel, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    # requires_grad off as in load_unet: CPU kernels differ (~1e-6) between the two settings
    model = UNet3DConditionModel(tiny_unet_config()).eval().requires_grad_(False)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def probe() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, 13, 2, 8, 8, generator=g), torch.tensor(300), torch.randn(1, 2, 50, 384, generator=g)


def save_pt(path: Path, state: dict[str, torch.Tensor], **extra) -> Path:
    torch.save({"state_dict": state, "global_step": 1234, **extra}, path)
    return path


@torch.no_grad()
def test_upstream_pt_and_safetensors_load_identically(tmp_path, source, probe):
    model, state = source
    pt = load_unet(save_pt(tmp_path / "latentsync_unet.pt", state), tiny_unet_config())
    save_file(state, str(tmp_path / "unet.safetensors"))
    st = load_unet(tmp_path / "unet.safetensors", tiny_unet_config())
    want = model(*probe)
    torch.testing.assert_close(pt(*probe), want, atol=0, rtol=0)
    torch.testing.assert_close(st(*probe), want, atol=0, rtol=0)
    for loaded in (pt, st):
        assert not loaded.training
        assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in loaded.state_dict().values())
        assert not any(p.requires_grad for p in loaded.parameters())


def test_strict_load_names_file_config_and_every_bad_key(tmp_path, source):
    _, state = source
    bad = dict(state)
    del bad["conv_in.bias"]
    bad["extra.layer.weight"] = torch.zeros(3)
    bad["conv_out.weight"] = torch.zeros(5, 32, 3, 3)
    path = save_pt(tmp_path / "broken.pt", bad)
    with pytest.raises(CheckpointError) as err:
        load_unet(path, tiny_unet_config())
    text = str(err.value)
    for needle in (str(path), "block_out_channels=[32, 32, 32, 64]", "missing from the file (1)", "conv_in.bias",
                   "unexpected in the file (1)", "extra.layer.weight", "shape mismatch (1)",
                   "conv_out.weight: file (5, 32, 3, 3) vs model (4, 32, 3, 3)"):
        assert needle in text, f"{needle!r} not in: {text}"
    assert "stage2_efficient" not in text


def test_released_config_is_named_in_errors(tmp_path, source):
    _, state = source
    with pytest.raises(CheckpointError, match=r"'stage2' U-Net config"):
        load_unet(save_pt(tmp_path / "tiny.pt", state))  # a tiny file against the full-size default config


@torch.no_grad()
def test_missing_position_tables_are_recomputed(tmp_path, source, probe):
    model, state = source
    without = {k: v for k, v in state.items() if not k.endswith(PE)}
    assert len(without) < len(state)
    save_file(without, str(tmp_path / "nope.safetensors"))
    loaded = load_unet(tmp_path / "nope.safetensors", tiny_unet_config())
    for key, buf in loaded.state_dict().items():
        if key.endswith(PE):
            torch.testing.assert_close(buf, temporal_position_table(*buf.shape[1:]), atol=0, rtol=0)
    torch.testing.assert_close(loaded(*probe), model(*probe), atol=0, rtol=0)


def test_odd_position_tables_are_kept_with_a_warning(tmp_path, source, caplog):
    _, state = source
    key = next(k for k in state if k.endswith(PE))
    odd = dict(state)
    odd[key] = state[key] + 0.01
    with caplog.at_level(logging.WARNING, logger="latentsync.models.unet_loader"):
        loaded = load_unet(save_pt(tmp_path / "odd.pt", odd), tiny_unet_config())
    assert "1 of 40 pos_encoder.pe tables differ" in caplog.text
    torch.testing.assert_close(loaded.state_dict()[key], odd[key])


@pytest.mark.parametrize("file_dtype, model_dtype", [(torch.float16, torch.float32), (torch.float32, torch.bfloat16)])
def test_file_dtype_is_converted(tmp_path, source, file_dtype, model_dtype):
    _, state = source
    path = save_pt(tmp_path / "cast.pt", {k: v.to(file_dtype) for k, v in state.items()})
    loaded = load_unet(path, tiny_unet_config(), dtype=model_dtype)
    got = loaded.state_dict()
    assert all(t.dtype == model_dtype for t in got.values())
    key = "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight"
    torch.testing.assert_close(got[key], state[key].to(file_dtype).to(model_dtype), atol=0, rtol=0)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_is_reported(tmp_path, source, suffix):
    _, state = source
    path = tmp_path / f"unet{suffix}"
    if suffix == ".pt":
        save_pt(path, state)
    else:
        save_file(state, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_unet(path, tiny_unet_config())


class _Payload:
    """Unpickling this calls open(marker, "w"), i.e. creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_malicious_pickle_is_refused(tmp_path, source):
    _, state = source
    marker = tmp_path / "pwned"
    path = save_pt(tmp_path / "evil.pt", {"conv_in.bias": state["conv_in.bias"]}, payload=_Payload(marker))
    with pytest.raises(CheckpointError, match="Refused"):
        load_unet(path, tiny_unet_config())
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    proof = tmp_path / "proof"
    torch.save({"payload": _Payload(proof)}, tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)
    assert proof.exists()


@torch.no_grad()
def test_stage2_efficient_checkpoint_gets_a_hint(tmp_path, probe):
    torch.manual_seed(1)
    efficient = UNet3DConditionModel(tiny_unet_config("stage2_efficient")).eval().requires_grad_(False)
    path = save_pt(tmp_path / "efficient.pt", efficient.state_dict())
    with pytest.raises(CheckpointError) as err:
        load_unet(path, tiny_unet_config())
    assert "stage2_efficient" in str(err.value) and "down-block motion modules" in str(err.value)
    loaded = load_unet(path, tiny_unet_config("stage2_efficient"))
    torch.testing.assert_close(loaded(*probe), efficient(*probe), atol=0, rtol=0)


def test_state_dict_shapes_match_a_built_model(source):
    model, _ = source
    assert unet_state_dict_shapes(tiny_unet_config()) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


_FULL_SIZE_LOAD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[2])
from latentsync.models.unet import load_unet
t = time.perf_counter()
model = load_unet(sys.argv[1], dtype=torch.float32)
seconds = time.perf_counter() - t
sd = model.state_dict()
keys = ("conv_in.weight", "mid_block.attentions.0.proj_in.weight", "conv_out.bias")
fills = {k: float(sd[k].flatten()[0]) for k in keys}
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak = int(status["VmHWM"].split()[0]) / 2**20  # this process's own high-water mark (ru_maxrss has the parent's)
print(json.dumps({"seconds": seconds, "peak_rss_gb": peak,
                  "dtypes": sorted({str(v.dtype) for v in sd.values()}), "fills": fills,
                  "meta": any(v.is_meta for v in sd.values())}))
"""


@pytest.mark.skipif(os.environ.get("LATENTSYNC_SKIP_FULLSIZE") == "1",
                    reason="full-size checkpoint round trip (2.4 GiB file, ~5 GiB RAM, ~20 s) skipped by "
                           "LATENTSYNC_SKIP_FULLSIZE=1")
def test_full_size_checkpoint_round_trip(tmp_path):
    """A full-size fp16 checkpoint in upstream's {"state_dict", "global_step"} format loads into an fp32 model, and the
    file's mapped pages are let go as their tensors are converted: the peak is the model, not the model and the
    file."""
    shapes = unet_state_dict_shapes(unet_config("stage2"))
    fill = {k: (i % 251) / 256.0 for i, k in enumerate(shapes)}  # exact in fp16
    state = {
        k: (temporal_position_table(*s[1:]) if k.endswith(PE) else torch.empty(s, dtype=torch.float16).fill_(fill[k]))
        .to(torch.float16)
        for k, s in shapes.items()
    }
    path = save_pt(tmp_path / "latentsync_unet.pt", state)
    del state
    try:
        disk_gb = path.stat().st_size / 2**30
        run = subprocess.run([sys.executable, "-c", _FULL_SIZE_LOAD, str(path), str(REPO_ROOT)],
                             capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        stats = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        path.unlink()
    print(f"\nfull-size U-Net load: {stats['seconds']:.1f} s, peak RSS {stats['peak_rss_gb']:.2f} GiB, "
          f"file {disk_gb:.2f} GiB")
    assert stats["dtypes"] == ["torch.float32"] and not stats["meta"]
    assert stats["fills"] == {k: fill[k] for k in stats["fills"]}
    model_gb = sum(math.prod(s) for s in shapes.values()) * 4 / 2**30
    assert stats["peak_rss_gb"] < model_gb + 0.6 + disk_gb / 4, (stats, model_gb, disk_gb)
