"""The nodes' inputs, as the real ComfyUI serves them (/object_info), have the defaults and ranges declared in
latentsync/options.py: a node, the command line (tests/unit/test_option_defaults.py) and the library agree."""

from __future__ import annotations

import pytest

from latentsync import options as opts

SHARED = {  # node -> its inputs that are declared options (node input name -> option name)
    "LatentSyncSampler": {n: n for n in ("seed", "steps", "guidance", "deepcache", "frame_offset", "keep_silent_mouth",
                                         "posterior", "compile", "batch_chunks", "quality")},
    "LatentSyncVideoFile": {n: n for n in ("seed", "steps", "guidance", "deepcache", "detector", "face_index",
                                           "length_policy", "crf", "compile", "batch_chunks", "require_face",
                                           "keep_silent_mouth", "posterior", "smooth", "quality", "min_sync",
                                           "sync_retries")},
    "LatentSyncFaceAlignCrop": {"detector": "detector", "face_index": "face_index", "smooth": "smooth"},
    "LatentSyncMatchLength": {"policy": "length_policy"},
}


@pytest.mark.parametrize("node", sorted(SHARED))
def test_node_defaults_are_the_declared_ones(comfy, node):
    info = comfy.object_info()[node]["input"]
    inputs = {**info.get("required", {}), **info.get("optional", {})}
    for input_name, option in SHARED[node].items():
        spec = inputs[input_name]
        widget = spec[1] if len(spec) > 1 else {}
        declared = opts.OPTIONS[option]
        assert opts.node_default(option, widget.get("default")) == declared.default, (node, input_name)
        if declared.spec and option != "face_index":
            assert (widget["min"], widget["max"]) == (declared.low, declared.high), (node, input_name)
        if declared.choices and option != "detector":  # the nodes' labels: "sample (upstream)", "custom"
            assert list(spec[0]) == list(opts.node_input(option)[0]), (node, input_name)
