"""One default per option: the command line, the library dataclasses and docs/options.md agree with
latentsync/options.py (the nodes' inputs are checked in the real ComfyUI: tests/integration/test_node_defaults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentsync import options as opts
from latentsync.cli import build_parser
from latentsync.cli_checks import apply_quality
from latentsync.cli_gate import check_gate
from latentsync.pipeline.runner import RunOptions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "options.md"
CLI_EXCEPTIONS = {"batch_chunks": 0}  # the command's 0 = auto (1, or 2 at 256 px on a GPU: the same result)
FLAGS = [o.name for o in opts.OPTIONS.values() if o.flag]


def cli_defaults(*argv: str) -> dict:
    """What the command does with no other options, in the library's terms (after --quality and the gate check)."""
    args = build_parser().parse_args(list(argv))
    apply_quality(args)
    check_gate(args)
    return {o.name: opts.cli_value(args, o.name) for o in opts.OPTIONS.values() if o.flag}


def cli_default(name: str):
    """Option ``name``'s default on the command line; one that goes with another option is read with that one."""
    required = opts.OPTIONS[opts.OPTIONS[name].requires] if opts.OPTIONS[name].requires else None
    return cli_defaults(*([required.flag, "3"] if required else []))[name]


def library_value(field: str):
    run = RunOptions()
    return getattr(run.sampler, field[len("sampler."):]) if field.startswith("sampler.") else getattr(run, field)


@pytest.mark.parametrize("name", FLAGS)
def test_cli_default_is_the_declared_one(name):
    assert cli_default(name) == CLI_EXCEPTIONS.get(name, opts.OPTIONS[name].default)


@pytest.mark.parametrize("name", [n for n in FLAGS if n not in CLI_EXCEPTIONS and n != "cut_log"])  # cut_log: CLI only
def test_node_and_cli_defaults_agree(name):
    """A node input rendered from the table means, at its default, what the command does without the flag."""
    kind, info = opts.node_input(name)
    assert opts.node_default(name, info["default"]) == cli_default(name), name


def test_cli_flags_keep_their_behaviour():
    """The flags rendered from the table parse as they always did (no preset and the gate off by default)."""
    parser = build_parser()
    args = parser.parse_args(["--quality", "close-up", "--min-sync", "3.5", "--sync-retries", "1", "--cut-log", "c"])
    assert (args.quality, args.min_sync, args.sync_retries, args.cut_log) == ("close-up", 3.5, 1, "c")
    args = parser.parse_args([])
    assert (args.quality, args.min_sync, args.sync_retries, args.cut_log) == (None, None, None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--quality", opts.NO_PRESET_NODE])  # "custom" is the nodes' word; the flag is left out
    assert opts.node_input("quality")[0] == [opts.NO_PRESET_NODE, "draft", "standard", "close-up"]  # frozen


@pytest.mark.parametrize("name", [o.name for o in opts.OPTIONS.values() if o.field])
def test_library_default_is_the_declared_one(name):
    assert library_value(opts.OPTIONS[name].field) == opts.OPTIONS[name].default


def test_track_and_presets_agree():
    from latentsync.face.track import FaceTracker
    from latentsync.presets import PRESETS

    assert FaceTracker(frame_size=(8, 8)).face_index == opts.OPTIONS["face_index"].default
    standard = PRESETS["standard"]  # "upstream's app defaults"
    assert (standard.steps, standard.guidance, standard.deepcache) == tuple(
        opts.OPTIONS[n].default for n in ("steps", "guidance", "deepcache"))


def test_ranges_come_from_option_checks():
    from latentsync.option_checks import SPECS

    for o in opts.OPTIONS.values():
        kind, info = opts.node_input(o.name)
        if o.spec and kind in ("INT", "FLOAT") and o.name != "face_index":
            assert (info["min"], info["max"]) == (SPECS[o.spec].low, SPECS[o.spec].high)
        assert opts.node_default(o.name, info["default"]) == o.default, o.name


def test_a_changed_default_is_caught(monkeypatch):
    """The checks above can fail: a library default moved away from the table is seen."""
    monkeypatch.setitem(opts.OPTIONS, "steps", opts.Option("steps", int, 21, "x", spec="steps", flag="--steps",
                                                           field="sampler.steps", preset=True))
    assert library_value("sampler.steps") != opts.OPTIONS["steps"].default


def test_docs_table_is_current():
    assert DOCS.read_text(encoding="utf-8") == opts.markdown(), (
        "docs/options.md is out of date: run python -m latentsync.options --markdown docs/options.md")
