"""The output can never be an input, however the path is spelled; partial files of dead runs are told apart from
those of live ones by their lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from latentsync.io.partial import PartialFile, remove_stale_partials
from latentsync.safe_paths import overwrite_problem, same_file


def test_every_spelling_of_an_input_is_the_same_file(tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.mp4"
    link.symlink_to(source)
    hard = tmp_path / "CLIP.MP4"  # another name for one inode, as case does on a case-insensitive file system
    os.link(source, hard)
    for spelling in (source, tmp_path / "sub" / ".." / "clip.mp4", link, hard, Path(os.path.relpath(source))):
        assert same_file(spelling, source), spelling
        assert "written over" in overwrite_problem(spelling, [("video input", str(source))])
    assert not same_file(tmp_path / "new.mp4", source)
    assert overwrite_problem(tmp_path / "new.mp4", [("video input", str(source)), ("audio input", None)]) is None


def test_partial_files_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    final = tmp_path / "out.mp4"
    live = PartialFile(final)  # this writer is alive: its lock is held
    dead = tmp_path / ".out.0badc0de.partial.mp4"
    dead.write_bytes(b"x")
    lookalike = tmp_path / ".out.not-hex!.partial.mp4"
    lookalike.write_bytes(b"x")
    try:
        assert remove_stale_partials(final) == [dead]
        assert live.path.exists() and lookalike.exists()
        fd = os.open(live.path, os.O_RDONLY)
        try:  # the live lock really is exclusive
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the partial's lock was free")
            except BlockingIOError:
                pass
        finally:
            os.close(fd)
    finally:
        live.discard()
    assert not live.path.exists()
