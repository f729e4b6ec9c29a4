"""One default per option: the command line, the library dataclasses and docs/options.md agree with
latentsync/options.py (the nodes' inputs are checked in the real ComfyUI: tests/integration/test_node_defaults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentsync import options as opts
from latentsync.cli import build_parser
from latentsync.cli_checks import apply_quality
from latentsync.pipeline.runner import RunOptions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "options.md"
CLI_EXCEPTIONS = {"batch_chunks": 0}  # the command's 0 = auto (1, or 2 at 256 px on a GPU: the same result)


def cli_defaults() -> dict:
    """What the command does with no options, in the library's terms."""
    args = build_parser().parse_args([])
    apply_quality(args)
    return {o.name: opts.cli_value(args, o.name) for o in opts.OPTIONS.values() if o.flag}


def library_value(field: str):
    run = RunOptions()
    return getattr(run.sampler, field[len("sampler."):]) if field.startswith("sampler.") else getattr(run, field)


@pytest.mark.parametrize("name", [o.name for o in opts.OPTIONS.values() if o.flag])
def test_cli_default_is_the_declared_one(name):
    assert cli_defaults()[name] == CLI_EXCEPTIONS.get(name, opts.OPTIONS[name].default)


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
