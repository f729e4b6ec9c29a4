"""Sync metrics: the not-scorable paths and scoring on real media, strict loading, and the small pieces."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from latentsync.audio.waveform import load_16k_mono
from latentsync.face.resize import linear_u8
from latentsync.metrics import files, tiny
from latentsync.metrics.mfcc import mfcc, mfcc_from_waveform, num_frames
from latentsync.metrics.plot import draw_curve
from latentsync.metrics.s3fd import S3FD, load_s3fd
from latentsync.metrics.scenes import rgb_to_hsv_u8, scene_ranges
from latentsync.metrics.score import (SyncModels, SyncOptions, frames_at_25fps, rank_tracks, score_clip,
                                      speaking_track)
from latentsync.metrics.stable_syncnet import load_stable_syncnet
from latentsync.metrics.sync import SyncResult, min_frames
from latentsync.metrics.syncnet_accuracy import mel_window, wav2lip_mel
from latentsync.metrics.syncnet_v2 import SyncNetV2, load_syncnet_v2
from latentsync.metrics.tracks import FaceTrack
from latentsync.models.checkpoint import CheckpointError

FACE = (352, 480, 800, 928)  # demo1's face region (left, top, right, bottom) at full resolution


@pytest.fixture(scope="module")
def demo_frames(media) -> torch.Tensor:
    """60 frames (2.4 s at 25 fps) of demo1's face region at 128 px, uint8 RGB."""
    frames = []
    with av.open(str(media / "demo1_video.mp4")) as container:
        for frame in container.decode(video=0):
            frames.append(np.asarray(frame.to_image().crop(FACE).resize((128, 128))))
            if len(frames) == 60:
                break
    return torch.from_numpy(np.stack(frames))


@pytest.fixture(scope="module")
def speech(media) -> torch.Tensor:
    return load_16k_mono(media / "demo1_audio.wav")


@pytest.fixture(scope="module")
def syncnet(tmp_path_factory) -> SyncNetV2:
    path = tiny.write_syncnet_v2(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model", seed=3)
    return load_syncnet_v2(path)


@pytest.fixture(scope="module")
def blind_s3fd(tmp_path_factory) -> S3FD:
    """An S3FD whose face logits never reach 0.9: a real detector that finds no face."""
    return load_s3fd(tiny.write_s3fd(tmp_path_factory.mktemp("s3fd") / "sfd_face.pth", seed=3, face_bias=-30.0))


def assert_not_scorable(score, *words: str) -> None:
    assert not score.scorable
    assert math.isnan(score.confidence) and math.isnan(score.distance) and score.offset == 0
    report = score.report()
    assert report.startswith("not scorable: ")
    for word in words:
        assert word in report, report


# ---------------------------------------------------------------------------------------------------- scoring
def test_too_short_video(demo_frames, speech, syncnet, blind_s3fd):
    need = min_frames()
    score = score_clip(demo_frames[:need - 1], speech, 25, SyncModels(syncnet, blind_s3fd))
    assert_not_scorable(score, "too short", f"{need - 1} frames", f"at least {need}", "video")


def test_too_short_audio(demo_frames, speech, syncnet, blind_s3fd):
    score = score_clip(demo_frames, speech[:20 * 640], 25, SyncModels(syncnet, blind_s3fd))
    assert_not_scorable(score, "too short", "20 frames", "audio")


def test_silence(demo_frames, syncnet, blind_s3fd):
    quiet = torch.randn(60 * 640, generator=torch.Generator().manual_seed(0)) * 1e-4  # -80 dBFS hiss
    for audio in (torch.zeros(60 * 640), quiet):
        assert_not_scorable(score_clip(demo_frames, audio, 25, SyncModels(syncnet, blind_s3fd)), "silent")


def test_no_face(demo_frames, speech, syncnet, blind_s3fd):
    score = score_clip(demo_frames, speech, 25, SyncModels(syncnet, blind_s3fd), SyncOptions(min_track=20))
    assert_not_scorable(score, "no face track", "0 of 60 frames", "more than 20")
    assert score.num_frames == 60 and score.faces_found == 0


def test_every_entry_point_says_not_scorable(demo_frames, speech, syncnet, blind_s3fd):
    """score_frames and score_crops, called directly, give the same not-scorable results as score_clip."""
    from latentsync.metrics.score import score_crops, score_frames

    models = SyncModels(syncnet, blind_s3fd)
    silent = torch.zeros(60 * 640)
    assert_not_scorable(score_frames(demo_frames, silent, models), "silent")
    assert_not_scorable(score_crops(demo_frames, silent, syncnet), "silent")
    assert_not_scorable(score_frames(demo_frames[:10], speech, models), "too short", "10 frames")
    assert_not_scorable(score_crops(demo_frames[:10], speech, syncnet), "too short", "10 frames")
    short = score_crops(demo_frames, speech[:10 * 640], syncnet)
    assert_not_scorable(short, "too short", "audio")
    record = short.as_dict()
    assert record["scorable"] is False and record["confidence"] is None and record["distance"] is None
    assert record["report"].startswith("not scorable: the clip is too short") and record["per_second"] == []
    json.dumps(record)


def test_result_record_and_per_second_curve(demo_frames, speech, syncnet):
    score = score_clip(demo_frames, speech, 25, SyncModels(syncnet), detect=False)
    record = json.loads(json.dumps(score.as_dict()))
    assert record["scorable"] and record["confidence"] == pytest.approx(score.confidence)
    assert record["offset"] == score.offset and len(record["tracks"]) == 1
    seconds = record["per_second"]
    assert [s["second"] for s in seconds] == [0, 1, 2]  # 60 frames = 2.4 s
    assert sum(s["windows"] for s in seconds) == 55
    times, values = score.curve
    assert seconds[0]["confidence"] == pytest.approx(float(values[times < 1].mean()))


def test_frames_too_small_for_the_detector(demo_frames, speech, syncnet, blind_s3fd):
    small = demo_frames[:, :100, :100]
    assert_not_scorable(score_clip(small, speech, 25, SyncModels(syncnet, blind_s3fd)), "too small", "100x100")
    assert score_clip(small, speech, 25, SyncModels(syncnet), detect=False).scorable


def test_given_boxes_replace_s3fd(media, tmp_path):
    """Boxes the caller knows (the sync gate passes the pipeline's tracked faces) are scored with no S3FD loaded:
    the crops follow the boxes, one box array per frame, and empty boxes mean the tracker found no face."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import sync_media
    from latentsync.metrics.files import load_sync_models

    frames = torch.from_numpy(sync_media.face_frames(media, 60, size=160))
    wav = sync_media.speech(media, 60)
    root = sync_media.metric_models(tmp_path)
    syncnet_only = load_sync_models(str(root), allow_download=False, detector=False)
    assert syncnet_only.s3fd is None
    options = SyncOptions(min_face_size=50)
    face = np.array([[30.0, 20.0, 130.0, 130.0, 1.0]])  # demo1's face in the 160 px square, steady
    given = score_clip(frames, wav, 25, syncnet_only, options, boxes=[face] * 60)
    assert given.scorable, given.reason
    assert given.faces_found == 60 and len(given.tracks) == 1
    moved = score_clip(frames, wav, 25, syncnet_only, options, boxes=[face + [10, 10, 10, 10, 0]] * 60)
    assert moved.scorable and moved.distance != given.distance  # the boxes are used: other crops, another score
    per_frame = [face + [i % 2, 0, i % 2, 0, 0] for i in range(60)]  # box i belongs to frame i
    assert score_clip(frames, wav, 25, syncnet_only, options, boxes=per_frame).distance != given.distance
    empty = [np.zeros((0, 4), np.float32)] * 60
    assert_not_scorable(score_clip(frames, wav, 25, syncnet_only, options, boxes=empty),
                        "the face tracker found a face in 0 of 60 frames")
    with pytest.raises(ValueError, match="59 box arrays for 60 frames"):
        score_clip(frames, wav, 25, syncnet_only, options, boxes=[face] * 59)
    with pytest.raises(ValueError, match="S3FD"):  # without boxes, the detector is needed
        score_clip(frames, wav, 25, syncnet_only, options)

    # Shot cuts: found by the content scan, or given (the gate gives the tracker's, and no frame is scanned).
    inverted = torch.cat([frames[:30], 255 - frames[30:]])  # a hard cut at frame 30: two shots too short to score
    assert_not_scorable(score_clip(inverted, wav, 25, syncnet_only, options, boxes=[face] * 60), "no face track")
    no_cut = score_clip(inverted, wav, 25, syncnet_only, options, boxes=[face] * 60, cuts=[])
    assert no_cut.scorable and len(no_cut.tracks) == 1
    assert_not_scorable(score_clip(frames, wav, 25, syncnet_only, options, boxes=[face] * 60, cuts=[30]),
                        "no face track")


def test_face_crops_are_scored(demo_frames, speech, syncnet):
    """Frames that already are face crops (detection off), as uint8 and as a ComfyUI IMAGE, at 25 and 30 fps."""
    score = score_clip(demo_frames, speech, 25, SyncModels(syncnet), detect=False)
    assert score.scorable, score.reason
    assert math.isfinite(score.confidence) and score.confidence >= 0 and math.isfinite(score.distance)
    assert -15 <= score.offset <= 15
    result = score.tracks[0].result
    assert result.num_windows == 60 - 5 and result.offset_distances.shape == (31,)
    assert score.confidence == pytest.approx(float(result.offset_distances.median() - result.offset_distances.min()))
    times, values = score.curve
    assert len(times) == 55 and times[0] == pytest.approx(2.5 / 25)
    as_image = score_clip(demo_frames.float() / 255.0, speech, 25, SyncModels(syncnet), detect=False)
    assert as_image.confidence == pytest.approx(score.confidence, abs=1e-5)
    faster = score_clip(torch.cat([demo_frames, demo_frames[-12:]]), speech, 30, SyncModels(syncnet), detect=False)
    assert faster.scorable and faster.num_frames == 60 and faster.source_fps == 30.0
    with pytest.raises(ValueError, match="fps"):
        score_clip(demo_frames, speech, 0, SyncModels(syncnet), detect=False)
    with pytest.raises(ValueError, match="to_16k_mono"):
        score_clip(demo_frames, speech[None], 25, SyncModels(syncnet), detect=False)


def test_rank_tracks_and_speaker(demo_frames, speech, syncnet):
    frames = torch.arange(60)
    face = FaceTrack(frames.numpy(), np.tile([[20.0, 20.0, 108.0, 108.0]], (60, 1)))
    corner = FaceTrack(frames.numpy(), np.tile([[0.0, 80.0, 40.0, 120.0]], (60, 1)))
    short = FaceTrack(frames[:5].numpy(), face.boxes[:5])  # 5 frames: upstream's first window needs 6
    results = rank_tracks(demo_frames, speech, syncnet, [face, corner, short])
    assert results[2] is None and all(isinstance(r, SyncResult) for r in results[:2])
    assert speaking_track(results) == max((0, 1), key=lambda i: results[i].confidence)
    assert speaking_track([None, None]) is None


# ---------------------------------------------------------------------------------------------------- loading
def test_loaders_are_strict_and_name_the_file(tmp_path):
    state = tiny.syncnet_v2_state(0)
    without_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(without_counters, tmp_path / "old.model")  # pre-0.4 PyTorch files have no BN counters
    assert isinstance(load_syncnet_v2(tmp_path / "old.model"), SyncNetV2)

    broken = dict(state)
    broken.pop("netcnnlip.0.weight")
    broken["extra.weight"] = torch.zeros(1)
    broken["netfcaud.3.bias"] = torch.zeros(7)
    torch.save(broken, tmp_path / "broken.model")
    with pytest.raises(CheckpointError) as err:
        load_syncnet_v2(tmp_path / "broken.model")
    text = str(err.value)
    for part in ("broken.model", "netcnnlip.0.weight", "extra.weight", "netfcaud.3.bias", "(7,)"):
        assert part in text, text

    torch.save(tiny.s3fd_state(0), tmp_path / "sfd.pth")
    with pytest.raises(CheckpointError, match="not a SyncNet v2"):
        load_syncnet_v2(tmp_path / "sfd.pth")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.model").write_bytes(pickle.dumps({"w": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="evil.model"):
        load_syncnet_v2(tmp_path / "evil.model")


def test_stable_syncnet_file_format_and_config(tmp_path):
    config = {"audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32], "downsample_factors": [2, 2],
                                "attn_blocks": [0, 1], "dropout": 0.0},
              "visual_encoder": {"in_channels": 6, "block_out_channels": [32, 32], "downsample_factors": [2, 2],
                                 "attn_blocks": [1, 0], "dropout": 0.0}}
    path = tiny.write_stable_syncnet(tmp_path / "stable_syncnet.pt", config)
    assert set(torch.load(path, weights_only=True)) == {"state_dict"}
    net = load_stable_syncnet(path, config)
    vision, audio = net(torch.randn(2, 6, 16, 16), torch.randn(2, 1, 16, 16))
    assert vision.shape == audio.shape == (2, 32 * 16)
    torch.testing.assert_close(vision.norm(dim=1), torch.ones(2))
    wider = {**config, "visual_encoder": {**config["visual_encoder"], "block_out_channels": [32, 64]}}
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_stable_syncnet(path, wider)
    with pytest.raises(ValueError, match="multiples of 32"):
        load_stable_syncnet(path, {**config, "audio_encoder": {**config["audio_encoder"], "block_out_channels": [30, 32]}})
    with pytest.raises(ValueError, match="choose one of"):
        load_stable_syncnet(path, "syncnet_25_pixel")


def test_model_file_specs():
    for spec in files.ALL_FILES:
        assert spec.repo_id.startswith("ByteDance/LatentSync-") and spec.subdir == "latentsync/auxiliary"
        assert Path(spec.dest("/models")).as_posix() == f"/models/latentsync/auxiliary/{Path(spec.filename).name}"
    assert files.SYNCNET_V2.filename == "auxiliary/syncnet_v2.model" and files.S3FD_FACE.filename == "auxiliary/sfd_face.pth"


def test_weight_recipe_is_pinned():
    """The hash generator's values must never drift (fixtures store only the recipe and a digest)."""
    values = tiny.hashed_uniform(1247, "netfcaud.3.bias", 4)
    assert values.dtype == np.float32 and np.all(np.abs(values) < 1)
    assert values.tolist() == tiny.hashed_uniform(1247, "netfcaud.3.bias", 4).tolist()
    assert values.tolist() != tiny.hashed_uniform(1248, "netfcaud.3.bias", 4).tolist()
    assert np.all(values * (1 << 23) == np.round(values * (1 << 23)))  # exact on the 2^-23 grid


# ---------------------------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("fps, count, expected", [
    (25, 10, list(range(10))),
    (50, 10, [0, 2, 4, 6, 8]),
    (12.5, 4, [0, 0, 1, 1, 2, 2, 3, 3]),
])
def test_frames_at_25fps(fps, count, expected):
    assert frames_at_25fps(count, fps).tolist() == expected


def test_frames_at_25fps_any_rate():
    for fps in (23.976, 24, 29.97, 30, 59.94, 60):
        index = frames_at_25fps(300, fps)
        assert len(index) == math.floor(300 * 25 / fps + 0.5)
        assert np.all(np.diff(index) >= 0) and index[-1] <= 299
        times = np.arange(len(index)) / 25
        # the shown frame is the latest one due by the tick: never more than a source frame or half a tick away
        assert np.all(np.abs(index / fps - times) <= max(1 / fps, 0.5 / 25) + 1e-9)


def test_hsv_of_known_colours():
    rgb = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [255, 255, 0], [10, 0, 5]], dtype=torch.uint8)
    hsv = rgb_to_hsv_u8(rgb).tolist()
    assert hsv[:5] == [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 128], [30, 255, 255]]
    assert hsv[5] == [165, 255, 10]  # hue -15 (OpenCV's 0..180 scale) wraps to 165


def test_scene_ranges_keep_upstreams_end():
    assert scene_ranges(100, []) == [(0, 100)]
    assert scene_ranges(100, [40]) == [(0, 40), (40, 99)]  # PySceneDetect's last position: one frame short


def test_mfcc_shapes_and_errors():
    for samples in (1, 400, 401, 16000, 16001):
        assert mfcc(torch.zeros(samples)).shape == (num_frames(samples), 13)
    assert mfcc_from_waveform(torch.zeros(16000)).shape == (13, 99) and mfcc_from_waveform(torch.zeros(16000)).dtype == torch.float32
    with pytest.raises(ValueError, match="empty"):
        mfcc(torch.zeros(0))


def test_wav2lip_mel_windows(speech):
    mel = wav2lip_mel(speech[:32000])
    assert mel.shape == (80, 1 + 32000 // 200) and mel.dtype == torch.float64
    assert float(mel.min()) >= -4 and float(mel.max()) <= 4
    assert mel_window(mel, 25, 16).shape == (1, 80, 52)
    assert torch.equal(mel_window(mel, 25, 16)[0], mel[:, 80:132])
    with pytest.raises(ValueError, match="earlier start"):
        mel_window(mel, 40, 16)


def test_linear_u8_checks():
    image = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    assert torch.equal(linear_u8(image, (5, 7)), image)
    assert linear_u8(image, (9, 3)).shape == (2, 9, 3, 3)
    with pytest.raises(TypeError, match="uint8"):
        linear_u8(image.float(), (3, 3))


def test_curve_picture():
    times, values = np.arange(50) / 25.0, np.sin(np.arange(50) / 5.0) * 4
    image = draw_curve(times, values, title="SyncNet confidence 1.00", duration=2.0, width=400, height=160)
    assert image.shape == (160, 400, 3) and image.dtype == np.uint8
    curve_pixels = np.all(image == np.array([90, 200, 120], dtype=np.uint8), axis=-1).sum()
    assert curve_pixels > 100
    empty = draw_curve(np.zeros(0), np.zeros(0), title="not scorable: silent")
    assert not np.all(empty == empty[0, 0]) and not np.any(np.all(empty == np.array([90, 200, 120]), axis=-1))
