"""HyperIQA (the data pipeline's image-quality filter) against upstream's ``eval/hyper_iqa.py``: the same
parameter names and shapes (the weight recipe's digest, made on upstream's state dict), the same scores on real
frames (tests/fixtures/hyper_iqa_upstream.json, computed by upstream's HyperNet + TargetNet with these weights),
and the checkpoint read only as plain tensors."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_media  # noqa: E402

from latentsync.data.hyper_iqa import HyperNet, QualityScorer, load_hypernet, prepare_frames  # noqa: E402
from latentsync.metrics.tiny import init_state, state_digest  # noqa: E402

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "hyper_iqa_upstream.json").read_text())


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    return data_media.write_tiny_hyperiqa(tmp_path_factory.mktemp("iqa"), FIXTURE["seed"])


def test_scores_equal_upstream(weights_file, media):
    shapes = {k: tuple(v.shape) for k, v in HyperNet().state_dict().items()}
    assert state_digest(init_state(shapes, FIXTURE["seed"], gain=FIXTURE["gain"])) == FIXTURE["state_digest"]
    frames = torch.from_numpy(data_media.face_frames(media, "demo1_video.mp4", max(FIXTURE["frames"]) + 1,
                                                     size=FIXTURE["size"]))[FIXTURE["frames"]]
    model = load_hypernet(weights_file)
    with torch.no_grad():
        scores = model(prepare_frames(frames))
    assert torch.allclose(scores, torch.tensor(FIXTURE["scores"]), atol=1e-5, rtol=0)
    assert QualityScorer(model).score_frames(frames) == pytest.approx(sum(FIXTURE["scores"]) / 3, abs=1e-5)


def test_centre_crop_and_padding():
    frames = torch.arange(256 * 300 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(1, 256, 300, 3)
    out = prepare_frames(frames)
    assert out.shape == (1, 3, 224, 224)
    top, left = 16, 38  # round((256 - 224) / 2), round((300 - 224) / 2)
    expected = (frames[0, top, left, 0] / 255.0 - 0.485) / 0.229
    assert out[0, 0, 0, 0].item() == pytest.approx(expected.item(), abs=1e-6)
    assert prepare_frames(torch.zeros(1, 200, 200, 3, dtype=torch.uint8)).shape == (1, 3, 224, 224)


def test_checkpoints_load_safely(tmp_path, weights_file):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"conv1.0.weight": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_hypernet(evil)
    wrong = tmp_path / "wrong.pkl"
    torch.save({"res.conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="not HyperIQA"):
        load_hypernet(wrong)
