"""One name per face detector everywhere (the registry's), older names still accepted, and one ModelFile class."""

from __future__ import annotations

import pytest

from latentsync import model_files
from latentsync.cli import build_parser
from latentsync.face import detector_registry as reg
from latentsync.face.detectors import DetectorUnavailableError, create_detector, detector_status
from latentsync.face.detectors import insightface_onnx
from latentsync.options import OPTIONS, node_input


def test_the_cli_the_nodes_and_the_library_offer_the_registry_names():
    assert reg.choices() == ("auto", "insightface", "offline")
    assert tuple(node_input("detector")[0]) == reg.choices()  # the nodes' dropdown: saved workflows store these
    detector_action = next(a for a in build_parser()._actions if a.dest == "detector")
    assert tuple(detector_action.choices) == reg.accepted() == reg.choices() + ("dlib",)
    assert detector_action.default == OPTIONS["detector"].default == "auto"
    assert set(detector_status([])) == set(reg.DETECTORS)


@pytest.mark.parametrize("old,new", [("dlib", "offline"), ("offline", "offline"), ("auto", "auto")])
def test_older_names_still_work(old, new):
    assert reg.canonical(old) == new
    assert build_parser().parse_args(["--detector", old]).detector == old  # scripts keep working


def test_unknown_detector_lists_the_choices():
    with pytest.raises(ValueError, match="auto, insightface, offline"):
        create_detector("mediapipe")


def test_alias_builds_the_same_detector_as_the_name(tmp_path):
    try:
        a = create_detector("dlib")
    except DetectorUnavailableError:
        pytest.skip("dlib is not installed here")
    assert type(a) is type(create_detector("offline"))
    with pytest.raises(DetectorUnavailableError, match="det_10g.onnx"):  # insightface: files missing, named
        create_detector("insightface", models_dirs=[tmp_path])


def test_one_model_file_class_and_the_registry_files():
    files = reg.entry("insightface").model_files()
    assert files == list(insightface_onnx.INSIGHTFACE_FILES) == model_files.insightface_files()
    assert all(type(f) is model_files.ModelFile for f in files)
    assert [f.name for f in files] == ["det_10g.onnx", "2d106det.onnx"]
    assert all(f.subdir == insightface_onnx.MODEL_SUBDIRS[0] for f in files)
    assert reg.entry("dlib").model_files() == []  # comes with its pip package


def test_offline_detector_never_downloads(tmp_path):
    model_files.ensure_detector_files("offline", [str(tmp_path)], allow_download=False)
    model_files.ensure_detector_files("auto", [str(tmp_path)], allow_download=False)
    with pytest.raises(model_files.ModelFilesMissing, match="det_10g.onnx"):
        model_files.ensure_detector_files("insightface", [str(tmp_path)], allow_download=False)
