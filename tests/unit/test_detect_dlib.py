"""Offline detector (dlib HOG + 68 landmarks): 68 -> 3 point mapping, input handling, clear messages when
its packages are missing, and the ``auto`` choice."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from latentsync.face.detectors import DetectorUnavailableError, create_detector, detector_status, to_rgb_uint8
from latentsync.face.detectors import dlib_hog

HAVE_DLIB = (
    importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
)


def test_points3_from_68_use_brow_and_nose_points():
    lmk = np.zeros((68, 2))
    lmk[17:22] = [[10, 20], [12, 18], [14, 17], [16, 18], [18, 20]]
    lmk[22:27] = [[30, 20], [32, 18], [34, 17], [36, 18], [38, 21]]
    lmk[29], lmk[30] = [24, 40], [24, 45]
    p = dlib_hog.points3_from_68(lmk)
    assert p.tolist() == [[14.0, 19.0], [34.0, 19.0], [24.0, 42.0]]  # 18.6 -> 19, 42.5 -> 42 (half to even)
    np.testing.assert_allclose(dlib_hog.points3_from_68(lmk, upstream_rounding=False)[2], [24, 42.5])


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((32, 40), np.uint8),
        ((32, 40, 1), np.uint8),
        ((32, 40, 4), np.uint8),
        ((2, 32, 40, 3), np.float32),
        ((3, 32, 40), np.uint8),
    ],
)
def test_to_rgb_uint8_accepts_grey_rgba_float_and_batches(shape, dtype):
    rng = np.random.default_rng(0)
    x = rng.random(shape).astype(dtype) if dtype == np.float32 else rng.integers(0, 255, shape).astype(dtype)
    out = to_rgb_uint8(x)
    assert out.dtype == np.uint8 and out.ndim == 4 and out.shape[-1] == 3 and out.flags.c_contiguous
    if shape[-1] == 4:
        np.testing.assert_array_equal(out[0], x[..., :3])
    if shape == (32, 40, 1):
        np.testing.assert_array_equal(out[0, ..., 2], x[..., 0])
    if dtype == np.float32:
        np.testing.assert_array_equal(out, np.rint(x * 255).astype(np.uint8))


def test_to_rgb_uint8_rejects_bad_input():
    with pytest.raises(ValueError, match="frames"):
        to_rgb_uint8(np.zeros((2, 3, 4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        to_rgb_uint8(np.full((4, 4, 3), 300, np.int32))
    with pytest.raises(TypeError, match="numpy"):
        to_rgb_uint8([[0, 1]])


def test_missing_dlib_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes "import dlib" fail as if not installed
    with pytest.raises(DetectorUnavailableError, match="pip install dlib-bin face-recognition-models"):
        create_detector("dlib")


def test_missing_model_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "face_recognition_models" else real(n, *a)
    )
    with pytest.raises(DetectorUnavailableError, match="face-recognition-models"):
        dlib_hog.default_predictor_path()
    assert detector_status([])["offline"] == "pip install dlib-bin face-recognition-models"


def test_auto_without_anything_lists_both_options(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(DetectorUnavailableError) as err:
        create_detector("auto", models_dirs=[tmp_path])
    msg = str(err.value)
    assert "det_10g.onnx" in msg and "2d106det.onnx" in msg and "pip install dlib-bin" in msg


def test_unknown_detector_name():
    with pytest.raises(ValueError, match="insightface"):
        create_detector("mediapipe")


@pytest.fixture(scope="module")
def dlib_det():
    return create_detector("dlib", threads=1)  # loading the 100 MB landmark model takes ~1.5 s: once


@pytest.mark.skipif(not HAVE_DLIB, reason="dlib-bin / face-recognition-models not installed")
class TestWithDlib:
    def test_auto_falls_back_to_dlib(self, tmp_path):
        det = create_detector("auto", models_dirs=[tmp_path], threads=1)
        assert det.name == "dlib" and "dlib" in det.describe()
        assert detector_status([tmp_path])["offline"] is None

    @pytest.mark.parametrize("hw", [(64, 64), (8, 500), (120, 90)])
    def test_small_and_odd_frames_do_not_crash(self, dlib_det, hw):
        rng = np.random.default_rng(0)
        out = dlib_det.detect(rng.integers(0, 255, (2, *hw, 3), dtype=np.uint8))
        assert len(out) == 2 and all(isinstance(f, list) for f in out)

    def test_blank_frames_have_no_face(self, dlib_det):
        det = dlib_det
        assert det.detect(np.zeros((3, 360, 640, 3), np.uint8)) == [[], [], []]
        assert det.detect(np.full((1, 720, 1280), 255, np.uint8)) == [[]]

    def test_bad_det_size(self):
        with pytest.raises(ValueError, match="det_size"):
            create_detector("dlib", det_size=32)
