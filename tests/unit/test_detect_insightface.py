"""insightface (SCRFD + 2d106det) through onnxruntime, checked on tiny synthetic ONNX models that have the
real files' interface (det_10g: input ``input.1`` (1, 3, ?, ?), 9 outputs score/box/keypoints x strides 8/16/32,
two anchors per cell, no batch axis; 2d106det: input ``data`` (N, 3, 192, 192) raw 0..255, output ``fc1``
(N, 212) in [-1, 1]) against an oracle written here with explicit loops (anchor by anchor, pixel by pixel)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from latentsync.face.detectors import DetectorUnavailableError, create_detector  # noqa: E402
from latentsync.face.detectors import insightface_onnx as ifo  # noqa: E402
from latentsync.face.detectors._ops import warp_crop_u8  # noqa: E402
from latentsync.face.detectors.base import box_area  # noqa: E402

SCORE_NAMES = ("448", "471", "494")
BOX_NAMES = ("451", "474", "497")
KPS_NAMES = ("454", "477", "500")


# ------------------------------------------------------------------------------------------- synthetic models
def build_scrfd(path: Path, seed: int = 0, score_bias: float = -2.0) -> Path:
    """A det_10g-shaped SCRFD: per stride, average-pool the image and project with 1x1 convolutions."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    outputs = {}
    for stride in (8, 16, 32):
        pooled = f"pool{stride}"
        nodes.append(
            helper.make_node(
                "AveragePool", ["input.1"], [pooled], kernel_shape=[stride, stride], strides=[stride, stride]
            )
        )
        for kind, channels, width in (("score", 2, 1), ("box", 8, 4), ("kps", 20, 10)):
            w = const(f"w_{kind}{stride}", rng.normal(0, 1.5, (channels, 3, 1, 1)))
            b = const(
                f"b_{kind}{stride}", np.full(channels, score_bias) if kind == "score" else rng.normal(0, 0.3, channels)
            )
            conv = f"conv_{kind}{stride}"
            nodes.append(helper.make_node("Conv", ["pool" + str(stride), w, b], [conv]))
            act = conv
            if kind == "score":
                act = f"sig{stride}"
                nodes.append(helper.make_node("Sigmoid", [conv], [act]))
            elif kind == "box":
                act = f"abs{stride}"
                one = const(f"one{stride}", [1.0])
                nodes.append(helper.make_node("Abs", [conv], [act + "a"]))
                nodes.append(helper.make_node("Add", [act + "a", one], [act]))
            tr = f"tr_{kind}{stride}"
            nodes.append(helper.make_node("Transpose", [act], [tr], perm=[0, 2, 3, 1]))
            shape = f"shape_{kind}{stride}"
            inits.append(numpy_helper.from_array(np.array([-1, width], np.int64), shape))
            name = {"score": SCORE_NAMES, "box": BOX_NAMES, "kps": KPS_NAMES}[kind][(8, 16, 32).index(stride)]
            nodes.append(helper.make_node("Reshape", [tr, shape], [name]))
            outputs[name] = width
    order = SCORE_NAMES + BOX_NAMES + KPS_NAMES
    graph = helper.make_graph(
        nodes,
        "scrfd_synthetic",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n" + n, outputs[n]]) for n in order],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_landmark(path: Path, seed: int = 1) -> Path:
    """A 2d106det-shaped regressor: Sub 127.5 / Mul 1/128 in the graph, 8x8 pooled grid -> 212 tanh outputs."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(np.array([127.5], np.float32), "mean"),
        numpy_helper.from_array(np.array([0.0078125], np.float32), "scale"),
        numpy_helper.from_array(rng.normal(0, 0.2, (192, 212)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 212).astype(np.float32), "b"),
    ]
    nodes = [
        # named as in MXNet exports: insightface's Landmark class reads these names to decide that the
        # graph normalises by itself (raw 0..255 input), as it does for the real 2d106det
        helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minus0"),
        helper.make_node("Mul", ["centred", "scale"], ["normed"], name="_mul0"),
        helper.make_node("AveragePool", ["normed"], ["pooled"], kernel_shape=[24, 24], strides=[24, 24]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["lin"]),
        helper.make_node("Tanh", ["lin"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lmk_synthetic",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", 212])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def synthetic_frame(h: int, w: int, seed: int = 3) -> np.ndarray:
    """Smooth colourful image with a few bright blobs, so that pooled features vary across the frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.25) * min(h, w)
        img += rng.uniform(40, 200, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("buffalo")
    folder = root / "insightface" / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    return {
        "root": root,
        "det": build_scrfd(folder / "det_10g.onnx"),
        "lmk": build_landmark(folder / "2d106det.onnx"),
    }


# ------------------------------------------------------------------------------------------------------ oracles
def oracle_decode(outs, det_hw, thr):
    """Anchor-by-anchor decode of the 9 SCRFD outputs into (score, box, kps) candidates."""
    cands = []
    for level, stride in enumerate((8, 16, 32)):
        scores, dists, kpss = outs[level], outs[level + 3], outs[level + 6]
        rows, cols = det_hw[0] // stride, det_hw[1] // stride
        k = 0
        for r in range(rows):
            for c in range(cols):
                for _anchor in range(2):
                    s = float(scores[k, 0])
                    if s >= thr:
                        ax, ay = c * stride, r * stride
                        d = dists[k] * stride
                        box = [ax - d[0], ay - d[1], ax + d[2], ay + d[3]]
                        kp = [(ax + kpss[k, 2 * i] * stride, ay + kpss[k, 2 * i + 1] * stride) for i in range(5)]
                        cands.append((s, box, kp))
                    k += 1
    return cands


def oracle_nms(cands, iou_thr=0.4):
    cands = sorted(cands, key=lambda c: -c[0])
    kept = []
    for s, box, kp in cands:
        ok = True
        for _, kb, _ in kept:
            iw = max(0.0, min(box[2], kb[2]) - max(box[0], kb[0]) + 1)
            ih = max(0.0, min(box[3], kb[3]) - max(box[1], kb[1]) + 1)
            inter = iw * ih
            a1 = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
            a2 = (kb[2] - kb[0] + 1) * (kb[3] - kb[1] + 1)
            if inter / (a1 + a2 - inter) > iou_thr:
                ok = False
                break
        if ok:
            kept.append((s, box, kp))
    return kept


def oracle_warp(img, m, size):
    """cv2.warpAffine(INTER_LINEAR, zero border) pixel by pixel: positions snapped to 1/32 px as OpenCV does."""
    a = np.array([[m[0][0], m[0][1]], [m[1][0], m[1][1]]], np.float64)
    inv = np.linalg.inv(a)
    t = -inv @ np.array([m[0][2], m[1][2]])
    h, w = img.shape[:2]
    out = np.zeros((size, size, 3), np.float64)
    for y in range(size):
        for x in range(size):
            sx, sy = inv @ np.array([x, y], np.float64) + t
            sx = math.floor(round(sx * 1024) / 32) / 32
            sy = math.floor(round(sy * 1024) / 32) / 32
            x0, y0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - x0, sy - y0
            acc = np.zeros(3)
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    yy, xx = y0 + dy, x0 + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        acc += wy * wx * img[yy, xx]
            out[y, x] = acc
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------------------------- tests
def test_anchor_centres_match_hand_computed_grid():
    c = ifo.anchor_centers(64, 96, 16, 2)
    assert c.shape == (4 * 6 * 2, 2)
    # cell (row 1, col 2) -> anchors 2*(1*6+2) and the next one, both at (32, 16)
    assert c[2 * 8].tolist() == [32.0, 16.0] and c[2 * 8 + 1].tolist() == [32.0, 16.0]
    assert c[-1].tolist() == [80.0, 48.0]


@pytest.mark.parametrize("frame_hw", [(300, 500), (480, 270)])
def test_scrfd_decode_and_nms_match_loop_oracle(models, frame_hw):
    det = ifo.ScrfdModel(models["det"], ["CPUExecutionProvider"], det_size=512, score_threshold=0.5)
    frame = synthetic_frame(*frame_hw)
    blob, scale = det.blob(frame)
    outs = det.session.run(det.output_names, {det.input_name: blob})
    assert [o.shape for o in outs[:3]] == [(64 * 64 * 2, 1), (32 * 32 * 2, 1), (16 * 16 * 2, 1)]
    kept = oracle_nms(oracle_decode(outs, (512, 512), 0.5))
    boxes, scores, kps = det(frame)
    assert len(kept) >= 3, "synthetic model should produce several detections"
    assert len(boxes) == len(kept)
    np.testing.assert_allclose(scores, [k[0] for k in kept], rtol=0, atol=1e-6)
    np.testing.assert_allclose(boxes * scale, np.array([k[1] for k in kept]), rtol=0, atol=1e-3)
    np.testing.assert_allclose(kps * scale, np.array([k[2] for k in kept]), rtol=0, atol=1e-3)


def test_letterbox_is_top_left_and_scaled_like_insightface(models):
    det = ifo.ScrfdModel(models["det"], ["CPUExecutionProvider"], det_size=512, bgr=False)
    frame = synthetic_frame(300, 500)
    new_h, new_w, scale = ifo.letterbox_size(300, 500, (512, 512))
    assert (new_h, new_w) == (int(512 * 300 / 500), 512) and scale == pytest.approx(new_h / 300)
    blob, s = det.blob(frame)
    pix = np.rint(blob[0].transpose(1, 2, 0) * 128 + 127.5)
    assert np.all(pix[new_h:] == 0) and s == scale  # black padding below the image
    # independent half-pixel bilinear resize of the red channel
    ys = (np.arange(new_h) + 0.5) * 300 / new_h - 0.5
    xs = (np.arange(new_w) + 0.5) * 500 / new_w - 0.5
    ys, xs = np.clip(ys, 0, 299), np.clip(xs, 0, 499)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, 299), np.minimum(x0 + 1, 499)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    r = frame[..., 0].astype(np.float64)
    ref = (
        r[y0][:, x0] * (1 - fy) * (1 - fx)
        + r[y0][:, x1] * (1 - fy) * fx
        + r[y1][:, x0] * fy * (1 - fx)
        + r[y1][:, x1] * fy * fx
    )
    assert np.abs(pix[:new_h, :new_w, 0] - np.rint(ref)).max() <= 1


def test_upstream_channel_order_feeds_bgr(models):
    frame = synthetic_frame(200, 200)
    rgb = ifo.ScrfdModel(models["det"], ["CPUExecutionProvider"], bgr=False).blob(frame)[0]
    bgr = ifo.ScrfdModel(models["det"], ["CPUExecutionProvider"], bgr=True).blob(frame)[0]
    np.testing.assert_array_equal(rgb[:, ::-1], bgr)


def test_warp_crop_matches_pixel_oracle():
    frame = synthetic_frame(90, 120, seed=5)
    m = ifo.similarity_crop_matrix(np.array([[70.3, 40.7]]), np.array([0.83]), np.array([17.0]), 32)[0]
    ours = warp_crop_u8(frame, m, 32)
    ref = oracle_warp(frame, m, 32)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert (ours != ref).mean() < 0.02
    # the crop runs off the top-left of the frame there: zeros, as OpenCV's constant border
    far = ifo.similarity_crop_matrix(np.array([[0.0, 0.0]]), np.array([1.0]), np.array([0.0]), 32)[0]
    assert warp_crop_u8(frame, far, 32)[:14, :14].max() == 0


def test_landmarks_match_oracle_crop_and_mapping(models):
    frame = synthetic_frame(360, 420, seed=7)
    lm = ifo.Landmark106Model(models["lmk"], ["CPUExecutionProvider"], bgr=True)
    assert lm.size == 192 and lm.batched
    boxes = np.array([[100.2, 80.6, 230.9, 260.1], [250.0, 20.0, 330.0, 120.0]], np.float32)
    mats = lm.crop_matrices(boxes)
    raw = lm.run(lm.crops(frame, mats))
    ours = lm.to_frame(raw, mats)
    for box, pts in zip(boxes, ours):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        s = 192 / (max(box[2] - box[0], box[3] - box[1]) * 1.5)
        m = [[s, 0, 96 - s * cx], [0, s, 96 - s * cy]]
        crop = oracle_warp(frame, m, 192)[..., ::-1]  # upstream: the network sees BGR
        out = lm.session.run(["fc1"], {"data": crop.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        crop_pts = (out.reshape(106, 2) + 1) * 96
        ref = np.stack([(crop_pts[:, 0] - m[0][2]) / s, (crop_pts[:, 1] - m[1][2]) / s], 1)
        np.testing.assert_allclose(pts, ref, atol=0.05)


def test_points3_use_upstream_indices_and_rounding():
    lmk = np.zeros((106, 2))
    lmk[[43, 48, 49, 51, 50]] = [[10.4, 20.0], [12.0, 21.0], [14.0, 22.0], [16.0, 21.0], [18.0, 20.0]]
    lmk[[101, 102, 103, 104, 105]] = [[40.0, 20.0]] * 5
    lmk[[74, 77, 83, 86]] = [[28.0, 40.0], [25.0, 50.0], [31.0, 50.0], [28.0, 52.6]]
    p = ifo.points3_from_106(lmk)
    # left brow: round(10.4) = 10 -> mean x = 14.0; nose y: round(52.6) = 53 -> mean 48.25 -> 48
    assert p.tolist() == [[14.0, 21.0], [40.0, 20.0], [28.0, 48.0]]
    np.testing.assert_allclose(ifo.points3_from_106(lmk, upstream_rounding=False)[0], [14.08, 20.8])


def test_detector_end_to_end_and_filters(models):
    det = create_detector("insightface", models_dirs=[models["root"]], device="cpu", face_filter=None)
    frames = np.stack([synthetic_frame(300, 500, seed=s) for s in (3, 4)])
    faces = det.detect(frames)
    assert len(faces) == 2 and all(len(f) > 0 for f in faces)
    areas = [[box_area(f.box) for f in fr] for fr in faces]
    assert all(a == sorted(a, reverse=True) for a in areas)  # largest first
    face = faces[0][0]
    assert face.landmarks.shape == (106, 2) and face.points3.shape == (3, 2)
    np.testing.assert_array_equal(face.points3, ifo.points3_from_106(face.landmarks))
    only = create_detector(
        "insightface", models_dirs=[models["root"]], device="cpu", face_filter=None, largest_only=True
    )
    assert [len(f) for f in only.detect(frames)] == [1, 1]
    strict = ifo.InsightFaceDetector(models["det"], models["lmk"], device="cpu")  # upstream filter
    for fr in strict.detect(frames):
        for f in fr:
            w, h = int(f.box[2]) - int(f.box[0]), int(f.box[3]) - int(f.box[1])
            assert w >= 50 and h >= 80 and 0.2 <= w / h <= 1.5 and f.score >= 0.5


def test_missing_files_message_lists_files_and_destinations(tmp_path):
    with pytest.raises(DetectorUnavailableError) as err:
        create_detector("insightface", models_dirs=[tmp_path])
    msg = str(err.value)
    for f in ifo.INSIGHTFACE_FILES:
        assert f.name in msg and f.url in msg and f.sha256 in msg
    assert str(tmp_path / "insightface" / "models" / "buffalo_l") in msg


def test_download_table_is_complete():
    for f in ifo.INSIGHTFACE_FILES:
        assert f.url.startswith("https://") and f.url.endswith(f.name)
        assert f.size and f.size > 1_000_000 and len(f.sha256) == 64
        assert f.revision and f.revision in f.url and f.repo_id and f.filename.endswith(f.name)


def test_corrupt_model_file_gives_clear_error(tmp_path):
    (tmp_path / "det_10g.onnx").write_bytes(b"not an onnx file")
    (tmp_path / "2d106det.onnx").write_bytes(b"nope")
    with pytest.raises(DetectorUnavailableError, match="corrupt"):
        create_detector("insightface", models_dirs=[tmp_path], device="cpu")
