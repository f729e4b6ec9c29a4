"""The feed-forward runs over many tokens in parts (its GEGLU projection was a step's largest temporary) and gives
the whole's result: per layer, and through the tiny U-Net of the fixture set with every feed-forward split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fixture_unet import fixture_unet
from latentsync.models.attention import FeedForward


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def test_parts_follow_the_budget_and_equal_the_whole(monkeypatch):
    torch.manual_seed(0)
    ff = FeedForward(8, nn).eval()  # 8 -> GEGLU 2 x 32 -> 8: 64 projected values per token
    x = torch.randn(10, 6, 8)
    whole = ff(x)
    calls: list[int] = []
    ff.net[0].register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
    monkeypatch.setattr(FeedForward, "max_hidden", 6 * 64 * 3)  # 3 rows of 6 tokens per part -> 4 parts
    parts = ff(x)
    assert calls == [3, 3, 3, 1]
    assert rel_l2(parts, whole) < 1e-6
    calls.clear()
    monkeypatch.setattr(FeedForward, "max_hidden", 1)  # never smaller than one row
    assert rel_l2(ff(x), whole) < 1e-6 and calls == [1] * 10
    calls.clear()
    monkeypatch.setattr(FeedForward, "max_hidden", 10 * 6 * 64)  # fits: one call
    assert torch.equal(ff(x), whole) and calls == [10]


@pytest.mark.parametrize("deepcache", [False, True])
def test_unet_with_every_feed_forward_in_parts_is_unchanged(fixtures_dir, monkeypatch, deepcache):
    from latentsync.models.unet import DeepCacheState

    unet = fixture_unet(fixtures_dir)
    config = unet.config
    g = torch.Generator().manual_seed(4)
    sample = torch.randn(2, config["in_channels"], 4, 8, 8, generator=g)
    audio = torch.randn(2, 4, 5, config["cross_attention_dim"], generator=g)
    t = torch.tensor(400)

    def steps() -> list[torch.Tensor]:
        state = DeepCacheState() if deepcache else None
        first = unet(sample, t, audio, deepcache=state)
        return [first, unet(sample, t, audio, deepcache=state)] if deepcache else [first]

    whole = steps()
    split: list[int] = []
    for m in unet.modules():
        if isinstance(m, FeedForward):
            m.net[0].register_forward_hook(lambda _m, args, _out: split.append(args[0].shape[0]))
    monkeypatch.setattr(FeedForward, "max_hidden", 1)  # every feed-forward one row at a time
    parts = steps()
    assert split and all(rows == 1 for rows in split)
    for got, want in zip(parts, whole):  # equal up to float summation order (GEMMs of fewer rows block otherwise)
        assert rel_l2(got, want) < 1e-5
