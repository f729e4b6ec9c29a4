"""The command line's progress bars: a unit on every bar, and no rate computed from work done before the bar
existed (a first report of 16 frames used to show millions of frames per second and an empty unit)."""

from __future__ import annotations

import re

from latentsync.progress import Progress


def test_first_report_shows_no_rate_and_every_bar_has_a_unit(capsys):
    progress = Progress(True, "[1/1] clip.mp4")
    progress("write", 16, 179)  # the encoder's first report arrives with 16 frames already written
    progress("sample", 1, 36)
    first = capsys.readouterr().err
    assert "?frame/s" in first and "?step/s" in first
    assert not re.search(r"\d{4,}(\.\d+)?\w*/s", first), first
    progress("write", 179, 179)  # done: the bars close (and clear their lines)
    progress("sample", 36, 36)
    assert all(bar.disable for bar in progress.bars.values())  # tqdm marks closed bars disabled


def test_single_item_stages_and_disabled_bars_print_nothing(capsys):
    Progress(True, "x")("audio", 1, 1)
    Progress(False, "x")("write", 5, 10)
    assert capsys.readouterr().err == ""
