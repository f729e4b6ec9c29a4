"""Quality presets on the command line: the preset fills what is not given, explicit options win."""

from __future__ import annotations

import pytest

from latentsync.cli import build_parser
from latentsync.cli_checks import apply_quality
from latentsync.presets import PRESETS


def effective(*argv: str) -> tuple:
    args = build_parser().parse_args(list(argv))
    apply_quality(args)
    return args.version, args.steps, args.guidance, args.deepcache


def test_without_a_preset_the_documented_defaults_apply():
    assert effective() == ("1.6", 20, 1.5, True)  # DeepCache on, as upstream's inference.sh (latentsync/options.py)


@pytest.mark.parametrize("name,expected", [("draft", ("1.5", 10, 1.5, True)), ("standard", ("1.6", 20, 1.5, True)),
                                           ("close-up", ("1.6", 30, 2.0, False))])
def test_each_preset_sets_its_documented_values(name, expected):
    assert effective("--quality", name) == expected
    preset = PRESETS[name]
    assert (preset.version, preset.steps, preset.guidance, preset.deepcache) == expected


def test_explicit_options_win_over_the_preset():
    assert effective("--quality", "draft", "--steps", "15", "--no-deepcache", "--version", "1.6",
                     "--guidance", "2.5") == ("1.6", 15, 2.5, False)
    assert effective("--quality", "close-up", "--deepcache") == ("1.6", 30, 2.0, True)
