"""When the runner empties the allocator's cache between stages (RunOptions.release_cache)."""

from __future__ import annotations

import torch

from latentsync.pipeline.runner import RunOptions, releases_cache

CUDA = torch.device("cuda")


def test_left_to_the_pack_it_releases_except_under_the_async_pool():
    assert RunOptions().release_cache is None
    assert releases_cache(CUDA, None, "native")
    assert not releases_cache(CUDA, None, "cudaMallocAsync")  # same pool peak without it; each release waits


def test_the_callers_choice_wins_and_other_devices_never_release():
    assert releases_cache(CUDA, True, "cudaMallocAsync")
    assert not releases_cache(CUDA, False, "native")
    for device in ("cpu", "mps", "meta"):
        assert not releases_cache(torch.device(device), True, "native")
