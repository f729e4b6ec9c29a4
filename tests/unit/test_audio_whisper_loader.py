"""Whisper checkpoint loader: strict key/shape checks (decoder included), fp16 files, corrupt and unsafe files."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from latentsync.models.checkpoint import CheckpointError
from latentsync.models.whisper import WhisperDims, WhisperEncoder, load_whisper_encoder, whisper_checkpoint_shapes

DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 16, "n_audio_head": 2, "n_audio_layer": 2,
    "n_vocab": 24, "n_text_ctx": 6, "n_text_state": 8, "n_text_head": 2, "n_text_layer": 1,
}


def _random_checkpoint(dims: dict = DIMS, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    shapes = whisper_checkpoint_shapes(WhisperDims(**dims))
    return {"dims": dict(dims), "model_state_dict": {k: torch.randn(s, generator=gen) * 0.1 for k, s in shapes.items()}}


def _save(obj: dict, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.fixture()
def ckpt() -> dict:
    return _random_checkpoint()


def test_loads_encoder_only_with_file_values(ckpt, tmp_path):
    enc = load_whisper_encoder(_save(ckpt, tmp_path / "w.pt"))
    own = enc.state_dict()
    expected = {k[len("encoder."):]: v for k, v in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
    assert set(own) == set(expected)
    for key, value in expected.items():
        assert torch.equal(own[key], value), key
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training


def test_fp16_file_loads_as_fp32(ckpt, tmp_path):
    half = copy.deepcopy(ckpt)
    half["model_state_dict"] = {k: v.half() for k, v in half["model_state_dict"].items()}
    enc = load_whisper_encoder(_save(half, tmp_path / "half.pt"))
    assert {t.dtype for t in enc.state_dict().values()} == {torch.float32}
    assert torch.equal(enc.conv1.weight, half["model_state_dict"]["encoder.conv1.weight"].float())


def test_hidden_states_shape_and_structure(ckpt, tmp_path):
    enc = load_whisper_encoder(_save(ckpt, tmp_path / "w.pt"))
    mel = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(1))
    states = enc.forward_hidden_states(mel)
    assert states.shape == (2, DIMS["n_audio_layer"] + 1, DIMS["n_audio_ctx"], DIMS["n_audio_state"])
    # Entry 0 is the embedded input, the last one the final block's output (before ln_post).
    assert torch.allclose(enc.ln_post(states[:, -1]), enc(mel), atol=1e-6)
    assert not torch.allclose(states[:, 0], states[:, 1])
    # Batch items are independent.
    assert torch.allclose(enc.forward_hidden_states(mel[1:]), states[1:], atol=1e-5)
    with pytest.raises(ValueError, match="3000"):
        enc.forward_hidden_states(mel[..., :2999])


def test_plain_torch_nn_operations_give_same_states(ckpt, tmp_path):
    path = _save(ckpt, tmp_path / "w.pt")
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2))
    default = load_whisper_encoder(path).forward_hidden_states(mel)
    plain = load_whisper_encoder(path, operations=torch.nn)
    assert type(plain.conv1) is torch.nn.Conv1d
    torch.testing.assert_close(plain.forward_hidden_states(mel), default, atol=1e-6, rtol=0)


def test_reduced_precision_runs_with_fp32_weights(ckpt, tmp_path):
    enc = load_whisper_encoder(_save(ckpt, tmp_path / "w.pt"))
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(3))
    ref = enc.forward_hidden_states(mel)
    low = enc.forward_hidden_states(mel.bfloat16())
    assert low.dtype == torch.bfloat16 and enc.conv1.weight.dtype == torch.float32
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_missing_decoder_key_is_reported(ckpt, tmp_path):
    del ckpt["model_state_dict"]["decoder.blocks.0.cross_attn.key.weight"]
    path = _save(ckpt, tmp_path / "nodec.pt")
    with pytest.raises(CheckpointError, match=r"(?s)nodec\.pt.*missing.*decoder\.blocks\.0\.cross_attn\.key\.weight"):
        load_whisper_encoder(path)


def test_wrong_shape_is_reported(ckpt, tmp_path):
    ckpt["model_state_dict"]["encoder.blocks.1.mlp.0.weight"] = torch.zeros(63, 16)
    with pytest.raises(CheckpointError, match=r"(?s)shape mismatch.*encoder\.blocks\.1\.mlp\.0\.weight.*\(63, 16\)"):
        load_whisper_encoder(_save(ckpt, tmp_path / "shape.pt"))


def test_extra_key_and_bad_dims_are_reported(ckpt, tmp_path):
    extra = copy.deepcopy(ckpt)
    extra["model_state_dict"]["encoder.blocks.2.attn.query.weight"] = torch.zeros(16, 16)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_whisper_encoder(_save(extra, tmp_path / "extra.pt"))
    bad = copy.deepcopy(ckpt)
    bad["dims"]["n_audio_head"] = 3
    with pytest.raises(CheckpointError, match="not divisible"):
        load_whisper_encoder(_save(bad, tmp_path / "heads.pt"))
    del bad["dims"]["n_vocab"]
    with pytest.raises(CheckpointError, match="n_vocab"):
        load_whisper_encoder(_save(bad, tmp_path / "dims.pt"))


def test_not_a_whisper_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="dims"):
        load_whisper_encoder(_save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "unet.pt"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # random bytes claim odd protocols
def test_truncated_file_is_reported(ckpt, tmp_path):
    path = _save(ckpt, tmp_path / "full.pt")
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_whisper_encoder(cut)
    garbage = tmp_path / "garbage.pt"
    rng = np.random.default_rng(0)
    for _ in range(300):  # random bytes trip the unpickler in many ways (IndexError, KeyError, ...)
        garbage.write_bytes(rng.bytes(4096))
        with pytest.raises(CheckpointError, match="garbage.pt"):
            load_whisper_encoder(garbage)


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running_it(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    ckpt["dims"]["payload"] = _Payload(str(marker))
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="Refused"):
        load_whisper_encoder(path)
    assert not marker.exists()


def test_fresh_encoder_has_whisper_layout():
    enc = WhisperEncoder(WhisperDims(**DIMS))
    expected = {k[len("encoder."):]: s for k, s in whisper_checkpoint_shapes(WhisperDims(**DIMS)).items() if k.startswith("encoder.")}
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == expected
    # Whisper's position table: sin over the first half of the channels, cos over the second.
    table = enc.positional_embedding
    assert torch.allclose(table[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    assert torch.allclose(table[1, 0], torch.sin(torch.tensor(1.0))) and torch.allclose(table[1, 8], torch.cos(torch.tensor(1.0)))
