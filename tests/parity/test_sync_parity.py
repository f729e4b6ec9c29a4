"""Sync metrics against upstream LatentSync's evaluation code (fixtures from tools/fixtures_gen/gen_sync_fixtures.py).

Reads the fixture folder from $LATENTSYNC_SYNC_FIXTURES (default tests/fixtures/sync): inputs (PNG frames, a
wav), upstream's outputs (outputs.safetensors, crops.png), the weight recipe and digests, and the acceptance
bounds (manifest.json "check"). Everything is built from the manifest, so any fixture set in this format works.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from latentsync.metrics import faces, scenes, syncnet_accuracy, tiny
from latentsync.metrics.crops import CROP_SIZE, crop_faces, crop_geometry, crop_regions
from latentsync.metrics.mfcc import mfcc
from latentsync.metrics.s3fd import S3FD, load_s3fd
from latentsync.metrics.score import SyncModels, SyncOptions, score_frames
from latentsync.metrics.stable_syncnet import StableSyncNet, load_stable_syncnet, stable_syncnet_shapes, syncnet_config
from latentsync.metrics.sync import num_windows, offset_distances, score_track, sync_result
from latentsync.metrics.syncnet_v2 import SyncNetV2, load_syncnet_v2
from latentsync.metrics.tracks import FaceTrack, track_faces

REPO = Path(__file__).resolve().parents[2]


def sync_fixture_dir() -> Path:
    return Path(os.environ.get("LATENTSYNC_SYNC_FIXTURES", REPO / "tests" / "fixtures" / "sync")).resolve()


@pytest.fixture(scope="module")
def fx() -> Path:
    path = sync_fixture_dir()
    if not (path / "manifest.json").is_file():
        pytest.fail(f"Sync fixtures not found at {path}; set LATENTSYNC_SYNC_FIXTURES to a folder made by "
                    "tools/fixtures_gen/gen_sync_fixtures.py.")
    return path


@pytest.fixture(scope="module")
def manifest(fx) -> dict:
    return json.loads((fx / "manifest.json").read_text())


@pytest.fixture(scope="module")
def check(manifest) -> dict:
    return manifest["check"]


@pytest.fixture(scope="module")
def params(manifest) -> dict:
    return manifest["generation_params"]


@pytest.fixture(scope="module")
def out(fx) -> dict[str, torch.Tensor]:
    return load_file(str(fx / "outputs.safetensors"))


def tiles(path: Path, height: int) -> torch.Tensor:
    """A vertically tiled PNG -> (n, height, w, 3) uint8."""
    image = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(image.reshape(-1, height, *image.shape[1:]).copy())


@pytest.fixture(scope="module")
def clip(fx, params) -> torch.Tensor:
    return tiles(fx / "clip_frames.png", params["clip"]["size"])


@pytest.fixture(scope="module")
def wide(fx, params) -> torch.Tensor:
    return tiles(fx / "wide_frames.png", params["wide"]["size"][0])


@pytest.fixture(scope="module")
def audio(fx) -> torch.Tensor:
    """The clip's 16 kHz samples as the float waveform the library takes (int16 / 32768)."""
    import av

    with av.open(str(fx / "clip_audio.wav")) as container:
        stream = container.streams.audio[0]
        assert stream.rate == 16000 and stream.format.name == "s16"
        data = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    return torch.from_numpy(data.astype(np.float32) / 32768.0)


@pytest.fixture(scope="module")
def weights(params, tmp_path_factory) -> dict[str, Path]:
    """The fixture's random weights rebuilt from the recipe and written in the real file formats."""
    recipe = params["weights"]
    folder = tmp_path_factory.mktemp("sync_weights")
    seed = recipe["seed"]
    states = {"syncnet_v2": tiny.syncnet_v2_state(seed), "s3fd": tiny.s3fd_state(seed, recipe["s3fd_face_bias"])}
    for name, state in states.items():
        assert tiny.state_digest(state) == recipe["digests"][name], f"{name}: the weight recipe changed"
    paths = {"syncnet_v2": folder / "syncnet_v2.model", "s3fd": folder / "sfd_face.pth"}
    torch.save(states["syncnet_v2"], paths["syncnet_v2"])
    torch.save(states["s3fd"], paths["s3fd"])
    return paths


@pytest.fixture(scope="module")
def syncnet(weights) -> SyncNetV2:
    return load_syncnet_v2(weights["syncnet_v2"])


@pytest.fixture(scope="module")
def s3fd(weights) -> S3FD:
    return load_s3fd(weights["s3fd"])


def assert_close(got, want, tol: dict, what: str) -> None:
    got, want = torch.as_tensor(got).double(), torch.as_tensor(want).double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} vs upstream {tuple(want.shape)}"
    torch.testing.assert_close(got, want, atol=tol.get("atol", 0.0), rtol=tol.get("rtol", 0.0),
                               msg=lambda m: f"{what}: {m}")


def assert_uint8_close(got: torch.Tensor, want: torch.Tensor, tol: dict, what: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype == torch.uint8, (what, got.shape, want.shape)
    diff = (got.int() - want.int()).abs()
    share = float((diff > 0).float().mean())
    assert int(diff.max()) <= tol["max_abs_diff"] and share <= tol["max_fraction_of_pixels_differing"], (
        f"{what}: max level difference {int(diff.max())}, {share:.2%} of values differ")


# ---------------------------------------------------------------------------------------------------- structure
def test_networks_have_upstream_keys_and_shapes(fx):
    """Our SyncNet v2, S3FD and the released StableSyncNet configs against upstream's modules' state dicts."""
    tables = json.loads((fx / "upstream_shapes.json").read_text())
    ours = {"syncnet_v2": SyncNetV2, "s3fd": S3FD}
    for name, table in tables.items():
        if name.startswith("stable_syncnet/"):
            shapes = stable_syncnet_shapes(syncnet_config(name.split("/", 1)[1]))
        else:
            with torch.device("meta"):
                shapes = {k: tuple(v.shape) for k, v in ours[name]().state_dict().items()}
        assert sorted(shapes) == sorted(table), f"{name}: key sets differ"
        assert {k: list(v) for k, v in shapes.items()} == table, f"{name}: shapes differ"


def test_weight_files_round_trip(weights, syncnet, s3fd):
    assert isinstance(syncnet, SyncNetV2) and isinstance(s3fd, S3FD)
    assert not syncnet.training and not any(p.requires_grad for p in syncnet.parameters())


# ---------------------------------------------------------------------------------------------------- S3FD
def s3fd_frames(params, wide, clip) -> list[tuple[str, torch.Tensor]]:
    named = {f"wide_{i}": wide[i] for i in range(len(wide))} | {f"clip_{i}": clip[i] for i in range(len(clip))}
    return [(name, named[name]) for name in params["s3fd"]["frames"]]


@torch.no_grad()
def test_s3fd_network_outputs(s3fd, params, wide, clip, out, check):
    for name, frame in s3fd_frames(params, wide, clip):
        loc, prob, priors = s3fd(faces.network_input(frame[None], params["s3fd"]["scale"]))
        assert torch.equal(priors, out[f"s3fd.{name}.priors"]), f"{name}: prior boxes differ"
        assert_close(prob[0], out[f"s3fd.{name}.face_prob"], check["s3fd_face_prob"], f"{name} face probability")
        assert_close(loc[0], out[f"s3fd.{name}.loc"], check["s3fd_loc"], f"{name} box offsets")


def test_s3fd_boxes(s3fd, params, wide, clip, out, check):
    for name, frame in s3fd_frames(params, wide, clip):
        got = faces.detect_faces(s3fd, frame[None], scale=params["s3fd"]["scale"], conf_th=params["s3fd"]["conf_th"])[0]
        want = out[f"s3fd.{name}.boxes"].numpy()
        assert got.shape == want.shape, f"{name}: {len(got)} boxes, upstream {len(want)}"
        assert_close(got[:, :4], want[:, :4], check["s3fd_boxes_px"], f"{name} boxes")
        assert_close(got[:, 4], want[:, 4], check["s3fd_scores"], f"{name} scores")
    batch = faces.detect_faces(s3fd, wide, scale=params["s3fd"]["scale"])  # batched == one by one
    for i, got in enumerate(batch):
        assert_close(got, out[f"s3fd.wide_{i}.boxes"], check["s3fd_boxes_px"], f"batched wide_{i}")


# ---------------------------------------------------------------------------------------------------- scenes, tracks
def test_scene_scores_and_cuts(clip, wide, out, params, check):
    for name, frames in (("clip", clip), ("wide", wide)):
        scores, _ = scenes.content_scores(frames)
        assert_close(scores, out[f"{name}.scene_scores"], check["scene_scores"], f"{name} scene scores")
    halves = [scenes.content_scores(clip[:7]), None]
    halves[1] = scenes.content_scores(clip[7:], halves[0][1])
    assert_close(torch.cat([halves[0][0], halves[1][0]]), out["clip.scene_scores"], check["scene_scores"], "streamed")
    scores, _ = scenes.content_scores(clip)
    ranges = scenes.scene_ranges(len(clip), scenes.detect_cuts(scores))
    assert [list(r) for r in ranges] == params["sync"]["scenes"]


def detections_per_frame(out, num_frames: int) -> list[np.ndarray]:
    flat = out["detections"].numpy()
    return [flat[flat[:, 0] == f][:, 1:] for f in range(num_frames)]


def fixture_tracks(out) -> list[FaceTrack]:
    count = sum(1 for k in out if k.endswith(".frames") and k.startswith("track"))
    return [FaceTrack(out[f"track{i}.frames"].numpy(), out[f"track{i}.boxes"].numpy()) for i in range(count)]


def test_face_tracks(out, params, check):
    dets = detections_per_frame(out, params["clip"]["frames"])
    got = []
    for first, end in params["sync"]["scenes"]:
        if end - first >= params["sync"]["min_track"]:
            got += track_faces(dets[first:end], first, min_track=params["sync"]["min_track"],
                               min_face_size=params["sync"]["min_face_size"])
    want = fixture_tracks(out)
    assert len(got) == len(want) == params["sync"]["num_tracks"]
    for g, w in zip(got, want):
        assert np.array_equal(g.frames, w.frames)
        assert_close(g.boxes, w.boxes, check["track_boxes_px"], "interpolated boxes")


def test_crops(fx, clip, out, params, check):
    crops = tiles(fx / "crops.png", CROP_SIZE)
    start = 0
    for i, track in enumerate(fixture_tracks(out)):
        geometry = crop_geometry(track)
        for key, got in zip("sxy", geometry):
            assert_close(got, out[f"track{i}.crop_{key}"], check["crop_geometry_px"], f"track {i} crop {key}")
        regions = crop_regions(*geometry, tuple(clip.shape[1:3]))
        got = crop_faces(clip[torch.as_tensor(track.frames)], regions)
        assert_uint8_close(got, crops[start:start + len(track)], check["crops_uint8"], f"track {i} crops")
        start += len(track)
    assert start == len(crops)


# ---------------------------------------------------------------------------------------------------- SyncNet
def track_audio(audio: torch.Tensor, track: FaceTrack) -> torch.Tensor:
    return audio[track.start * 640:(int(track.frames[-1]) + 1) * 640]


def test_mfcc(audio, out, check):
    for i, track in enumerate(fixture_tracks(out)):
        ints = torch.round(track_audio(audio, track).double() * 32768)
        assert_close(mfcc(ints), out[f"track{i}.mfcc"], check["mfcc"], f"track {i} MFCC")


@pytest.fixture(scope="module")
def track_results(fx, syncnet, audio, out, params):
    crops = tiles(fx / "crops.png", CROP_SIZE)
    results, start = [], 0
    for track in fixture_tracks(out):
        results.append(score_track(syncnet, crops[start:start + len(track)], len(track), track_audio(audio, track),
                                   vshift=params["sync"]["vshift"], start_frame=track.start))
        start += len(track)
    return results


def test_syncnet_embeddings(fx, syncnet, audio, out, check):
    from latentsync.metrics.mfcc import mfcc_from_waveform
    from latentsync.metrics.sync import audio_embeddings, lip_embeddings

    crops = tiles(fx / "crops.png", CROP_SIZE)
    start = 0
    for i, track in enumerate(fixture_tracks(out)):
        wav = track_audio(audio, track)
        windows = num_windows(len(track), wav.shape[0])
        lips = lip_embeddings(syncnet, crops[start:start + len(track)], windows)
        auds = audio_embeddings(syncnet, mfcc_from_waveform(wav), windows)
        assert_close(lips, out[f"track{i}.lip_embeddings"], check["embeddings"], f"track {i} lip embeddings")
        assert_close(auds, out[f"track{i}.audio_embeddings"], check["embeddings"], f"track {i} audio embeddings")
        start += len(track)


def test_offset_distances_and_scores(track_results, out, params, check):
    vshift = params["sync"]["vshift"]
    for i, (result, summary) in enumerate(zip(track_results, params["sync"]["tracks"])):
        # From upstream's embeddings (the distance code alone), then from ours end to end.
        dists = offset_distances(out[f"track{i}.lip_embeddings"], out[f"track{i}.audio_embeddings"], vshift)
        assert_close(dists, out[f"track{i}.offset_distances"], check["distances"], f"track {i} distances")
        upstream_only = sync_result(out[f"track{i}.offset_distances"], vshift)
        assert upstream_only.offset == summary["offset"]
        assert_close(upstream_only.window_confidence, out[f"track{i}.window_confidence"], check["curve"], "curve")
        assert result.offset == summary["offset"], f"track {i}: offset {result.offset}, upstream {summary['offset']}"
        assert abs(result.confidence - summary["confidence"]) <= check["confidence"]["atol"]
        assert abs(result.distance - summary["distance"]) <= check["distance"]["atol"]
        assert_close(result.window_confidence, out[f"track{i}.window_confidence"], check["curve"], f"track {i} curve")


def test_score_frames_end_to_end(syncnet, clip, audio, out, params, check):
    """Scenes, tracks, crops, MFCC, SyncNet and upstream's average over tracks, from upstream's detections."""
    dets = detections_per_frame(out, params["clip"]["frames"])
    options = SyncOptions(vshift=params["sync"]["vshift"], min_track=params["sync"]["min_track"],
                          min_face_size=params["sync"]["min_face_size"])
    score = score_frames(clip, audio, SyncModels(syncnet), options, detections=dets)
    assert score.scorable, score.reason
    assert [(t.track.start, int(t.track.frames[-1])) for t in score.tracks] == [tuple(t["frames"]) for t in params["sync"]["tracks"]]
    assert score.offset == params["sync"]["av_offset"]
    assert abs(score.confidence - params["sync"]["confidence"]) <= check["confidence"]["atol"]
    times, curve = score.curve
    assert len(times) == sum(t.result.num_windows for t in score.tracks) and np.all(np.diff(times) >= 0)


# ---------------------------------------------------------------------------------------------------- StableSyncNet
@pytest.fixture(scope="module")
def stable(fx, params, tmp_path_factory) -> StableSyncNet:
    config = json.loads((fx / params["stable_syncnet"]["config"]).read_text())
    state = tiny.stable_syncnet_state(config, params["weights"]["seed"])
    assert tiny.state_digest(state) == params["weights"]["digests"]["stable_syncnet"]
    path = tmp_path_factory.mktemp("stable") / "stable_syncnet.pt"
    torch.save({"state_dict": state}, path)
    return load_stable_syncnet(path, config)


def stable_inputs(fx, params, out, audio):
    p = params["stable_syncnet"]
    res, nf = p["resolution"], p["num_frames"]
    frames = tiles(fx / "stable_frames.png", res)
    mel = syncnet_accuracy.wav2lip_mel(audio)
    pairs = out["stable.pairs"].tolist()
    samples = torch.stack([frames[f:f + nf] for f, _, _ in pairs])
    windows = torch.cat([syncnet_accuracy.mel_window(mel, a, nf, p["fps"]) for _, a, _ in pairs])[:, None]
    labels = torch.tensor([y for _, _, y in pairs])
    return syncnet_accuracy.prepare_frames(samples, res, p["lower_half"]), windows, labels, mel


def test_stable_mel_and_frames(fx, params, out, audio, check):
    p = params["stable_syncnet"]
    _, windows, _, mel = stable_inputs(fx, params, out, audio)
    assert_close(mel, out["stable.mel"], check["stable_mel"], "mel spectrogram")
    assert_close(windows, out["stable.mel_windows"], check["stable_mel"], "mel windows")
    big = tiles(fx / "stable_frames_40.png", p["resize_from"])
    samples = big.reshape(-1, p["num_frames"], *big.shape[1:])
    prepared = syncnet_accuracy.prepare_frames(samples, p["resolution"], lower_half=False)
    got_u8 = torch.round(prepared * 127.5 + 127.5).to(torch.uint8)
    want = out["stable.resized_u8"].reshape(got_u8.shape)
    assert_uint8_close(got_u8, want, check["stable_frames_uint8"], "resized frames")


def test_stable_embeddings_and_accuracy(stable, fx, params, out, audio, check):
    frames, windows, labels, _ = stable_inputs(fx, params, out, audio)
    vision, aud = syncnet_accuracy.embed(stable, frames, windows)
    assert_close(vision, out["stable.vision"], check["stable_embeddings"], "vision embeddings")
    assert_close(aud, out["stable.audio"], check["stable_embeddings"], "audio embeddings")
    result = syncnet_accuracy.accuracy(stable, frames, windows, labels, threshold=params["stable_syncnet"]["threshold"])
    assert_close(result.similarities, out["stable.sims_fp32"], check["stable_similarities"], "similarities")
    # upstream's eval_syncnet_acc.py runs in float16: same calls, same accuracy
    assert torch.equal(result.predictions, out["stable.sims_fp16"] > params["stable_syncnet"]["threshold"])
    assert result.accuracy == pytest.approx(params["stable_syncnet"]["accuracy_fp16"], abs=1e-9)
