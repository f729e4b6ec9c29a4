"""A mapped checkpoint's pages let go after conversion: only the file's own pages, and their values read back."""

from __future__ import annotations

import sys

import pytest
import torch

from latentsync.models.mapped_pages import MappedCheckpoint

MIB = 1 << 20
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc/self/maps: Linux")


def rss_file_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssFile:"))


def test_a_mapped_tensors_pages_leave_the_resident_set_and_read_back(tmp_path):
    want = {"a": torch.randn(16 * MIB // 4), "b": torch.arange(1000, dtype=torch.float32)}
    torch.save(want, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", mmap=True, weights_only=True)
    assert float(state["a"].sum()) == pytest.approx(float(want["a"].sum()), rel=1e-4)  # every page read in
    before = rss_file_bytes()
    released = MappedCheckpoint(tmp_path / "ckpt.pt").release(state["a"])
    assert released >= 15 * MIB
    assert before - rss_file_bytes() >= 12 * MIB
    assert torch.equal(state["a"], want["a"]) and torch.equal(state["b"], want["b"])  # read back from the file


def test_memory_that_is_not_the_files_is_left_alone(tmp_path):
    torch.save({"x": torch.ones(4 * MIB // 4)}, tmp_path / "one.pt")
    torch.save({"y": torch.ones(4 * MIB // 4)}, tmp_path / "other.pt")
    other = torch.load(tmp_path / "other.pt", mmap=True, weights_only=True)["y"]
    pages = MappedCheckpoint(tmp_path / "one.pt")  # not mapped: nothing of it is in this process
    assert pages.ranges == []
    torch.load(tmp_path / "one.pt", mmap=True, weights_only=True)  # mapped, then freed again
    mapped = torch.load(tmp_path / "one.pt", mmap=True, weights_only=True)["x"]
    pages = MappedCheckpoint(tmp_path / "one.pt")
    anonymous = torch.full((4 * MIB // 4,), 7.0)  # madvise(DONTNEED) would zero these pages: never touched
    copy = mapped.half()
    assert pages.release(anonymous) == 0 and pages.release(copy) == 0 and pages.release(other) == 0
    assert bool((anonymous == 7).all()) and bool((copy == 1).all()) and bool((other == 1).all())
    assert pages.release(mapped) > 0 and bool((mapped == 1).all())
