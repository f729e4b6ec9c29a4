"""Write tests/fixtures/sync/: upstream LatentSync's SyncNet evaluation run on real frames with random weights.

Imports upstream's own code from an extracted checkout (``--upstream`` or $LS_UPSTREAM, commit a229c39) and runs
it: ``S3FD.detect_faces``, ``SyncNetDetector.__call__`` (scene detection, face tracks, crops),
``eval_sync_conf.syncnet_eval`` (SyncNet v2 per track, averaged), ``melspectrogram``/``crop_audio_window``,
``ImageProcessor.process_images`` and ``eval_syncnet_acc.main`` (StableSyncNet accuracy). Nothing of upstream is
copied here. Where upstream shells out to ffmpeg, the call is answered with lossless files (PNG data in its
``.jpg`` names, an FFV1 video, PCM wavs), so upstream sees exactly the fixture's frames and samples; its
detections come from a recorded list (random S3FD weights find no faces). See README.md for the command.

Weights: SyncNet v2 and S3FD have fixed sizes (55 / 90 MB), so the fixture stores their recipe
(``latentsync.metrics.tiny``, counter-based hash, identical on every machine) and digest instead of the files;
the tests rebuild the real-format files from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from upstream_env import check_from_upstream, load_ours, parse_args, use_upstream  # this folder: run as a script

REPO = Path(__file__).resolve().parents[2]
SEED = 1247
S3FD_FACE_BIAS = 2.0
MIN_TRACK = 10  # upstream's eval uses 50; short fixture clips need fewer (a generation parameter)
CLIP_SIZE = 160
SCENE_SIZE = (288, 512)  # (h, w): width 512 -> PySceneDetect downscale factor 2
STABLE_RES = 32
STABLE_RESIZE_FROM = 40
STABLE_CONFIG = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32, 32, 64, 64, 64],
                      "downsample_factors": [[2, 1], 2, 2, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 1, 0, 0],
                      "dropout": 0.0},
    "visual_encoder": {"in_channels": 48, "block_out_channels": [32, 32, 32, 64, 64],
                       "downsample_factors": [[1, 2], 2, 2, 2, 2], "attn_blocks": [0, 0, 1, 0, 0], "dropout": 0.0},
}
# Acceptance bounds the parity tests read (manifest "check"), and what was observed (manifest "tolerances").
CHECK = {
    "_about": "bounds for a float32 CPU re-implementation; uint8 images are compared level by level",
    "s3fd_face_prob": {"atol": 1e-5}, "s3fd_loc": {"atol": 1e-5}, "s3fd_boxes_px": {"atol": 1e-3},
    "s3fd_scores": {"atol": 1e-5}, "scene_scores": {"atol": 1e-9}, "track_boxes_px": {"atol": 1e-9},
    "crop_geometry_px": {"atol": 1e-9}, "crops_uint8": {"max_abs_diff": 0, "max_fraction_of_pixels_differing": 0.0},
    "mfcc": {"atol": 1e-9}, "embeddings": {"atol": 1e-4, "rtol": 1e-4}, "distances": {"atol": 1e-3},
    "confidence": {"atol": 1e-3}, "distance": {"atol": 1e-3}, "curve": {"atol": 1e-3}, "offset": "exact",
    "stable_mel": {"atol": 1e-9}, "stable_frames_uint8": {"max_abs_diff": 0, "max_fraction_of_pixels_differing": 0.0},
    "stable_embeddings": {"atol": 1e-5}, "stable_similarities": {"atol": 1e-5}, "stable_accuracy": "exact",
}
OBSERVED = {
    "_about": "this library vs these files on the generator machine (tests/parity/test_sync_parity.py), fp32 CPU",
    "s3fd": "exact frame by frame (network outputs, priors, boxes); a batch of 3 frames: boxes within 3.1e-5 px",
    "scenes, tracks, crop geometry, crops": "exact (0 levels)",
    "mfcc": "1.3e-12 (|ref| 60, float64)", "syncnet embeddings, distances, offsets, curves": "exact",
    "wav2lip mel": "1.0e-13 (float64)", "stable_syncnet embeddings and similarities": "exact",
    "not measured here": "CUDA / float16 (upstream's GPU default); another CPU (expect ~1e-6 relative on the networks)",
}
# Face regions (y0, x0, size) in the 1080x1920 demo videos, and the two clip parts (frames at 25 fps).
DEMO1_FACE, DEMO2_FACE = (480, 352, 448), (160, 292, 520)
PART1, PART2 = 22, 16


# ---------------------------------------------------------------------------------------------------- media
def decode_frames(path: Path, count: int) -> np.ndarray:
    import av

    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return np.stack(out)


def region(frames: np.ndarray, box: tuple[int, ...], size: tuple[int, int]) -> np.ndarray:
    """Cut ``(y0, x0, side)`` or ``(y0, x0, height, width)`` out of each frame and resize it to ``size`` (h, w)."""
    from PIL import Image

    y0, x0, h, w = box if len(box) == 4 else (*box, box[2])
    return np.stack([np.asarray(Image.fromarray(f[y0:y0 + h, x0:x0 + w]).resize((size[1], size[0]), Image.LANCZOS))
                     for f in frames])


def read_wav(path: Path) -> np.ndarray:
    from scipy.io import wavfile

    rate, data = wavfile.read(str(path))
    assert rate == 16000 and data.dtype == np.int16 and data.ndim == 1, (path, rate, data.dtype)
    return data


def tile(frames: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) -> one (n*h, w, 3) image."""
    return frames.reshape(-1, *frames.shape[2:])


def save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG", optimize=True)


def write_lossless_video(path: str, frames_rgb: np.ndarray) -> None:
    """FFV1 (lossless) under upstream's ``video.mp4`` name: OpenCV decodes it to exactly these pixels."""
    import av

    with av.open(path, "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames_rgb.shape[2], frames_rgb.shape[1], "bgr0"
        for rgb in frames_rgb:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_png_as_jpg(folder: str, frames_rgb: np.ndarray) -> None:
    """Frames as PNG data under ffmpeg's ``%06d.jpg`` names (OpenCV reads files by content)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, rgb in enumerate(frames_rgb):
        Image.fromarray(rgb).save(os.path.join(folder, "%06d.jpg" % (i + 1)), format="PNG")


def write_wav(path: str, samples: np.ndarray) -> None:
    from scipy.io import wavfile

    wavfile.write(path, 16000, samples.astype(np.int16))


# ---------------------------------------------------------------------------------------------------- detections
def synthetic_detections() -> list[list[dict]]:
    """Per clip frame, S3FD-style faces ``{"frame", "bbox", "conf"}`` (float32 values, as S3FD gives them).

    Scene 1: the speaker (side ~112) with frames 5-6 missing and a small face after it in frames 0-14 (upstream
    skips it in the first pass; its own track is too small). Scene 2: a face larger than the frame, frame 30
    missing, and a small face first in frame 22 (it starts a track that gets nothing else)."""
    rng = np.random.default_rng(SEED)
    dets: list[list[dict]] = []
    for f in range(PART1 + PART2):
        faces = []
        if f < PART1:
            if f not in (5, 6):
                cx, cy, side = 86 + 0.4 * f + rng.normal(0, 1.5), 80 + rng.normal(0, 1.5), 112 + rng.normal(0, 3)
                faces.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, 0.99 - 0.001 * f))
            if f < 15:
                faces.append((4 + rng.normal(0, 1), 112 + rng.normal(0, 1), 50 + rng.normal(0, 1), 158, 0.93))
        else:
            if f == PART1:
                faces.append((130.0, 2.0, 158.0, 30.0, 0.91))
            if f != 30:
                cx, cy, side = 80 + rng.normal(0, 2), 84 + 0.3 * (f - PART1) + rng.normal(0, 2), 172 + rng.normal(0, 4)
                faces.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, 0.98))
        dets.append([{"frame": f, "bbox": [float(np.float32(v)) for v in face[:4]], "conf": float(np.float32(face[4]))}
                     for face in faces])
    return dets


# ---------------------------------------------------------------------------------------------------- ffmpeg stand-ins
class Recorder:
    """Answers upstream's ffmpeg/VideoWriter calls with exact files and records what upstream computes."""

    def __init__(self, clip_frames: np.ndarray, clip_audio: np.ndarray):
        self.frames, self.audio = clip_frames, clip_audio
        self.writers: dict[str, list[np.ndarray]] = {}
        self.crop_videos: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.last_cut: np.ndarray | None = None
        self.evals: dict[str, dict] = {}
        self.current: dict | None = None
        self.scene_scores: dict[int, float] = {}
        self.tracks: list = []
        self.crop_dets: list = []

    # syncnet_detect: subprocess.run
    def run(self, command: str, shell: bool = True, stdout=None):
        tokens = command.split()
        out = tokens[-1]
        if "-r 25" in command:
            write_lossless_video(out, self.frames)
        elif "-f image2" in command:
            write_png_as_jpg(os.path.dirname(out), self.frames)
        elif "-acodec pcm_s16le" in command:
            write_wav(out, self.audio)
        elif "-ss" in command:
            start, stop = float(tokens[tokens.index("-ss") + 1]), float(tokens[tokens.index("-to") + 1])
            self.last_cut = self.audio[round(start * 16000):round(stop * 16000)]
            write_wav(out, self.last_cut)
        elif "-c:a aac" in command:
            video_in = tokens[tokens.index("-i") + 1]
            crops = np.stack(self.writers.pop(video_in))[..., ::-1]  # BGR -> RGB
            self.crop_videos[out] = (crops, self.last_cut.copy())
            Path(out).touch()
        else:
            raise RuntimeError(f"unexpected ffmpeg call: {command}")
        return SimpleNamespace(returncode=0)

    def video_writer(self, path, fourcc, fps, size):
        frames = self.writers.setdefault(path, [])

        class Writer:
            def write(self, image):
                assert image.shape[:2] == (size[1], size[0])
                frames.append(image.copy())

            def release(self):
                Path(path).touch()

        return Writer()

    # syncnet_eval: subprocess.call
    def call(self, command: str, shell: bool = True, stdout=None):
        tokens = command.split()
        video, out = tokens[tokens.index("-i") + 1], tokens[-1]
        crops, audio = self.crop_videos[video]
        if "-f image2" in command:
            write_png_as_jpg(os.path.dirname(out), crops)
            self.current = self.evals.setdefault(video, {"lip": [], "aud": []})
        else:
            write_wav(out, audio)
        return 0


def recorded(fn, sink: list):
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        sink.append(result)
        return result
    return wrapper


# ---------------------------------------------------------------------------------------------------- upstream runs
def run_s3fd(detectors_mod, frames_list: list[np.ndarray]) -> list[dict]:
    """upstream ``S3FD.detect_faces(rgb, conf_th=0.9, scales=[0.25])`` per frame, with the head's inputs."""
    net = detectors_mod.S3FD(device="cpu")
    captured: list = []
    original = net.net.detect.forward

    def capture(loc, conf, priors):
        captured.append((loc.clone(), conf.clone(), priors.clone()))
        return original(loc, conf, priors)

    net.net.detect.forward = capture
    results = []
    for rgb in frames_list:
        captured.clear()
        with contextlib.redirect_stdout(io.StringIO()):
            boxes = net.detect_faces(rgb, conf_th=0.9, scales=[0.25])
        loc, conf, priors = captured[0]
        results.append({"boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 5), "loc": loc[0].numpy(),
                        "face_prob": conf[0, :, 1].numpy(), "priors": priors.numpy()})
    return results


def run_sync_eval(up, rec: Recorder, workdir: str, syncnet_path: str) -> dict:
    """Upstream's detector (scenes, tracks, crops) and ``syncnet_eval`` on the clip; records every stage."""
    import torch

    detect_mod, eval_mod, conf_mod = up["syncnet_detect"], up["syncnet_eval"], up["eval_sync_conf"]
    content = detect_mod.ContentDetector
    saved = [(detect_mod, "subprocess"), (eval_mod, "subprocess"), (eval_mod, "calc_pdist"),
             (eval_mod, "python_speech_features"), (eval_mod, "signal"), (detect_mod.cv2, "VideoWriter"),
             (content, "_calculate_frame_score")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in saved]
    real_score, pdist = content._calculate_frame_score, eval_mod.calc_pdist
    mfcc, medfilt = eval_mod.python_speech_features.mfcc, eval_mod.signal.medfilt

    def score(self, frame_num, frame_img):
        value = real_score(self, frame_num, frame_img)
        rec.scene_scores[int(frame_num)] = float(value)
        return value

    detect_mod.subprocess = SimpleNamespace(run=rec.run)
    eval_mod.subprocess = SimpleNamespace(call=rec.call)
    detect_mod.cv2.VideoWriter = rec.video_writer
    content._calculate_frame_score = score
    eval_mod.calc_pdist = lambda a, b, vshift=10: rec.current.setdefault("dists", pdist(a, b, vshift=vshift))
    eval_mod.python_speech_features = SimpleNamespace(mfcc=lambda *a: rec.current.setdefault("mfcc", mfcc(*a)))
    eval_mod.signal = SimpleNamespace(medfilt=lambda x, kernel_size: rec.current.setdefault(
        "curve", medfilt(x, kernel_size=kernel_size)))

    detector = detect_mod.SyncNetDetector(device="cpu", detect_results_dir=os.path.join(workdir, "detect_results"))
    detections = synthetic_detections()
    detector.detect_face = lambda frames_dir, facedet_scale=0.25: [[dict(d) for d in f] for f in detections]
    scenes: list = []
    detector.scene_detect = recorded(detector.scene_detect, scenes)
    detector.track_face = recorded(detector.track_face, rec.tracks)
    detector.crop_video = recorded(detector.crop_video, rec.crop_dets)

    syncnet = eval_mod.SyncNetEval(device="cpu")
    syncnet.loadParameters(syncnet_path)
    model = syncnet.__S__
    lip, aud = model.forward_lip, model.forward_aud
    # upstream runs these without no_grad and reads .data; the records are detached copies
    model.forward_lip = lambda x: rec.current["lip"].append(lip(x).detach()) or rec.current["lip"][-1]
    model.forward_aud = lambda x: rec.current["aud"].append(aud(x).detach()) or rec.current["aud"][-1]
    evaluate = syncnet.evaluate

    def evaluate_recorded(video_path, temp_dir="temp", batch_size=20, vshift=15):
        result = evaluate(video_path=video_path, temp_dir=temp_dir, batch_size=batch_size, vshift=vshift)
        rec.evals[video_path]["result"] = {"offset": int(result[0]), "distance": float(result[1]),
                                           "confidence": float(result[2])}
        return result

    syncnet.evaluate = evaluate_recorded
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            detector(video_path=os.path.join(workdir, "input.mp4"), min_track=MIN_TRACK)
            noop = lambda video_path, min_track: None  # noqa: E731  (the crops above are what it evaluates)
            av_offset, conf = conf_mod.syncnet_eval(syncnet, noop, os.path.join(workdir, "input.mp4"),
                                                    os.path.join(workdir, "temp"),
                                                    detect_results_dir=os.path.join(workdir, "detect_results"))
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
    per_track = {Path(video).stem: rec_eval for video, rec_eval in sorted(rec.evals.items())}
    scene_list = [(int(a.frame_num), int(b.frame_num)) for a, b in scenes[0]]
    return {"av_offset": int(av_offset), "conf": float(conf), "scenes": scene_list, "per_track": per_track,
            "detections": detections}


def run_scene_only(up, workdir: str, frames: np.ndarray) -> list[float]:
    """Upstream's ``scene_detect`` (PySceneDetect) on the wide frames: the per-frame content scores."""
    detect_mod = up["syncnet_detect"]
    folder = os.path.join(workdir, "scene_only")
    os.makedirs(folder, exist_ok=True)
    write_lossless_video(os.path.join(folder, "video.mp4"), frames)
    scores: dict[int, float] = {}
    content = detect_mod.ContentDetector
    real = content._calculate_frame_score

    def score(self, frame_num, frame_img):
        value = real(self, frame_num, frame_img)
        scores[int(frame_num)] = float(value)
        return value

    content._calculate_frame_score = score
    try:
        detect_mod.SyncNetDetector.scene_detect(None, folder)
    finally:
        content._calculate_frame_score = real
    return [scores[i] for i in range(len(frames))]


def check_lossless_reads(workdir: str, frames: np.ndarray) -> None:
    """The stand-in files must read back bit-exact with OpenCV (what upstream uses)."""
    import cv2

    path = os.path.join(workdir, "probe.mkv")
    write_lossless_video(path, frames[:3])
    cap = cv2.VideoCapture(path)
    for rgb in frames[:3]:
        ok, bgr = cap.read()
        assert ok and np.array_equal(bgr[..., ::-1], rgb), "OpenCV does not read the FFV1 stand-in exactly"
    write_png_as_jpg(os.path.join(workdir, "probe_jpg"), frames[:1])
    assert np.array_equal(cv2.imread(os.path.join(workdir, "probe_jpg", "000001.jpg"))[..., ::-1], frames[0])


def run_stable(up, workdir: str, frames32: np.ndarray, frames40: np.ndarray, audio: np.ndarray,
               pairs: list[tuple[int, int, int]], weights: str) -> dict:
    """StableSyncNet: upstream's mel, windows, frame processing, fp32 forward and ``eval_syncnet_acc.main``."""
    import torch
    from einops import rearrange
    from omegaconf import OmegaConf

    audio_mod, data_mod, acc_mod = up["audio"], up["syncnet_dataset"], up["eval_syncnet_acc"]
    processor = up["image_processor"].ImageProcessor(resolution=STABLE_RES, device="cpu")
    wav = audio.astype(np.float32) / 32768.0
    mel = torch.from_numpy(audio_mod.melspectrogram(wav))
    window_self = SimpleNamespace(mel_window_length=int(np.ceil(16 / 5 * 16)), video_fps=25)
    samples = []
    for frame_start, audio_start, label in pairs:
        window = data_mod.SyncNetDataset.crop_audio_window(window_self, mel, audio_start)
        chosen = processor.process_images(frames32[frame_start:frame_start + 16])
        samples.append({"frames": chosen, "audio_samples": window,
                        "y": torch.ones(1).float() if label else torch.zeros(1).float()})
    resized = [processor.process_images(frames40[i * 16:(i + 1) * 16]) for i in range(len(frames40) // 16)]

    config = {"model": STABLE_CONFIG, "ckpt": {"inference_ckpt_path": weights},
              "data": {"latent_space": False, "val_data_dir": "", "val_fileslist": "", "batch_size": 4,
                       "num_workers": 0, "num_val_samples": len(samples), "num_frames": 16, "lower_half": True},
              "run": {"seed": 42}}

    class Dataset(torch.utils.data.Dataset):
        def __init__(self, *args):
            pass

        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            return samples[i]

        def worker_init_fn(self, worker_id):
            pass

    sims_fp16: list = []
    real_cos = torch.nn.functional.cosine_similarity
    acc_mod.SyncNetDataset = Dataset
    torch.nn.functional.cosine_similarity = lambda a, b: sims_fp16.append(real_cos(a, b)) or sims_fp16[-1]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            acc_mod.main(OmegaConf.create(config))
    finally:
        torch.nn.functional.cosine_similarity = real_cos
    line = [ln for ln in out.getvalue().splitlines() if "SyncNet Accuracy" in ln][-1]
    accuracy = float(line.split(":")[1].strip().rstrip("%")) / 100

    net = up["stable_syncnet"].StableSyncNet(STABLE_CONFIG)
    net.load_state_dict(torch.load(weights, weights_only=True)["state_dict"])
    net.eval()
    frames = torch.stack([s["frames"] for s in samples])
    frames = rearrange(frames, "b f c h w -> b (f c) h w")[:, :, STABLE_RES // 2:, :]
    mels = torch.stack([s["audio_samples"] for s in samples])  # float64, as the dataset hands them over
    with torch.no_grad():
        vision, audio_emb = net(frames, mels.float())
    return {"mel": mel.numpy(), "mel_windows": mels.numpy(), "vision": vision.numpy(), "audio": audio_emb.numpy(),
            "sims_fp32": real_cos(vision, audio_emb).numpy(), "sims_fp16": torch.cat(sims_fp16).float().numpy(),
            "accuracy_fp16": accuracy, "resized": torch.stack(resized).numpy()}


def upstream_shapes(up) -> dict:
    """Key -> shape tables of upstream's networks (meta device): the released StableSyncNet configs too."""
    import torch
    from omegaconf import OmegaConf

    tables = {}
    with torch.device("meta"):
        tables["syncnet_v2"] = {k: list(v.shape) for k, v in up["syncnet"].S().state_dict().items()}
        tables["s3fd"] = {k: list(v.shape) for k, v in up["s3fd_nets"].S3FDNet(device="cpu").state_dict().items()}
        for name in ("syncnet_16_pixel_attn", "syncnet_16_pixel", "syncnet_16_latent"):  # 25_pixel: no attn_blocks
            config = OmegaConf.to_container(OmegaConf.load(os.path.join("configs", "syncnet", f"{name}.yaml")).model)
            net = up["stable_syncnet"].StableSyncNet(config)
            tables[f"stable_syncnet/{name}"] = {k: list(v.shape) for k, v in net.state_dict().items()}
    return tables


def import_upstream(upstream: str, workdir: str) -> dict:
    """Upstream's modules, imported from the checkout with ``workdir`` as the working directory (upstream reads
    ``configs/``, ``latentsync/utils/mask.png`` and ``checkpoints/`` relative to it)."""
    use_upstream(upstream, workdir)
    names = {"syncnet_detect": "eval.syncnet_detect", "syncnet_eval": "eval.syncnet.syncnet_eval",
             "syncnet": "eval.syncnet.syncnet", "eval_sync_conf": "eval.eval_sync_conf", "detectors": "eval.detectors",
             "s3fd_nets": "eval.detectors.s3fd.nets", "audio": "latentsync.utils.audio",
             "syncnet_dataset": "latentsync.data.syncnet_dataset", "eval_syncnet_acc": "eval.eval_syncnet_acc",
             "image_processor": "latentsync.utils.image_processor", "stable_syncnet": "latentsync.models.stable_syncnet"}
    mods = {k: importlib.import_module(v) for k, v in names.items()}
    check_from_upstream(mods["syncnet_eval"], upstream)
    return mods


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "sync", "eval/syncnet_detect.py")
    upstream, media, out_dir = os.path.abspath(args.upstream), Path(args.media).resolve(), Path(args.out).resolve()
    ours = load_ours()
    tiny = ours.metrics.tiny
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    # Inputs: demo1's face for 22 frames, a cut, demo2's face for 16 frames; the audio of the same frames.
    d1, d2 = decode_frames(media / "demo1_video.mp4", PART1), decode_frames(media / "demo2_video.mp4", PART2)
    clip = np.concatenate([region(d1, DEMO1_FACE, (CLIP_SIZE, CLIP_SIZE)), region(d2, DEMO2_FACE, (CLIP_SIZE, CLIP_SIZE))])
    audio = np.concatenate([read_wav(media / "demo1_audio.wav")[:PART1 * 640], read_wav(media / "demo2_audio.wav")[:PART2 * 640]])
    wide = np.concatenate([region(d1[:2], (400, 0, 607, 1080), SCENE_SIZE), region(d2[:1], (100, 0, 607, 1080), SCENE_SIZE)])
    frames32 = region(d1, DEMO1_FACE, (STABLE_RES, STABLE_RES))
    frames32 = np.concatenate([frames32, region(d2, DEMO2_FACE, (STABLE_RES, STABLE_RES))])
    frames40 = region(d1[:16], DEMO1_FACE, (STABLE_RESIZE_FROM, STABLE_RESIZE_FROM))
    pairs = [(0, 0, 1), (2, 2, 1), (4, 4, 1), (6, 0, 0), (20, 20, 1), (22, 22, 1), (0, 20, 0), (21, 3, 0)]

    workdir = tempfile.mkdtemp(prefix="sync_fixtures_")
    runs = []
    try:
        up = import_upstream(upstream, workdir)
        aux = os.path.join(workdir, "checkpoints", "auxiliary")
        os.makedirs(aux)
        syncnet_state, s3fd_state = tiny.syncnet_v2_state(SEED), tiny.s3fd_state(SEED, S3FD_FACE_BIAS)
        torch.save(syncnet_state, os.path.join(aux, "syncnet_v2.model"))
        torch.save(s3fd_state, os.path.join(aux, "sfd_face.pth"))
        stable_path = os.path.join(workdir, "stable_syncnet.pt")
        stable_state = tiny.stable_syncnet_state(STABLE_CONFIG, SEED)
        torch.save({"state_dict": stable_state}, stable_path)
        check_lossless_reads(workdir, clip)
        for attempt in range(2):  # twice: the re-run noise goes into the manifest
            run_dir = os.path.join(workdir, f"run{attempt}")
            os.makedirs(run_dir)
            rec = Recorder(clip, audio)
            runs.append({
                "s3fd": run_s3fd(up["detectors"], [*wide, *clip[:2]]),
                "sync": run_sync_eval(up, rec, run_dir, os.path.join(aux, "syncnet_v2.model")),
                "rec": rec,
                "scene_wide": run_scene_only(up, run_dir, wide),
                "stable": run_stable(up, run_dir, frames32, frames40, audio, pairs, stable_path),
            })
        shapes = upstream_shapes(up)
    finally:
        os.chdir(REPO)
        shutil.rmtree(workdir, ignore_errors=True)
    write_fixture(out_dir, runs, clip, audio, wide, frames32, frames40, pairs, shapes,
                  {"syncnet_v2": tiny.state_digest(syncnet_state), "s3fd": tiny.state_digest(s3fd_state),
                   "stable_syncnet": tiny.state_digest(stable_state)})


def noise(a: dict, b: dict) -> float:
    """Largest difference between two runs' float outputs."""
    return max((float(np.abs(np.asarray(a[k], dtype=np.float64) - np.asarray(b[k], dtype=np.float64)).max())
                for k in a if np.asarray(a[k]).size), default=0.0)


def best_offset_gap(per_track: dict) -> float:
    """Smallest gap between the best and the second-best mean distance over offsets (how safe the argmin is)."""
    import torch

    gaps = []
    for ev in per_track.values():
        mean = torch.sort(torch.stack(ev["dists"], 1).mean(1)).values
        gaps.append(float(mean[1] - mean[0]))
    return min(gaps)


def write_fixture(out: Path, runs: list, clip, audio, wide, frames32, frames40, pairs, shapes, digests) -> None:
    """Write the fixture folder: inputs, upstream's outputs, the manifest (parameters, digests, bounds)."""
    import torch
    from safetensors.torch import save_file

    run, again = runs
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    tensors: dict[str, np.ndarray] = {}
    files: dict[str, dict] = {}

    # S3FD
    s3fd_names = [f"wide_{i}" for i in range(len(wide))] + [f"clip_{i}" for i in range(2)]
    for name, res in zip(s3fd_names, run["s3fd"]):
        for key in ("boxes", "loc", "face_prob", "priors"):
            tensors[f"s3fd.{name}.{key}"] = res[key]
    s3fd_noise = max(noise(a, b) for a, b in zip(run["s3fd"], again["s3fd"]))

    # detections, scenes, tracks, crops, SyncNet
    sync, rec = run["sync"], run["rec"]
    flat = [[d["frame"], *d["bbox"], d["conf"]] for frame in sync["detections"] for d in frame]
    tensors["detections"] = np.asarray(flat, dtype=np.float64)
    tensors["clip.scene_scores"] = np.asarray([rec.scene_scores[i] for i in range(len(clip))], dtype=np.float64)
    tensors["wide.scene_scores"] = np.asarray(run["scene_wide"], dtype=np.float64)
    tracks = [t for scene in rec.tracks for t in scene]
    crops = []
    for i, (track, proc) in enumerate(zip(tracks, [c["proc_track"] for c in rec.crop_dets])):
        tensors[f"track{i}.frames"] = np.asarray(track["frame"], dtype=np.int64)
        tensors[f"track{i}.boxes"] = np.asarray(track["bbox"], dtype=np.float64)
        for key in ("s", "x", "y"):
            tensors[f"track{i}.crop_{key}"] = np.asarray(proc[key], dtype=np.float64)
        name = "%05d" % i
        video = [v for v in rec.crop_videos if Path(v).stem == name][0]
        crops.append(rec.crop_videos[video][0])
        ev = sync["per_track"][name]
        tensors[f"track{i}.mfcc"] = np.asarray(ev["mfcc"], dtype=np.float64)
        tensors[f"track{i}.lip_embeddings"] = torch.cat(ev["lip"]).numpy()
        tensors[f"track{i}.audio_embeddings"] = torch.cat(ev["aud"]).numpy()
        tensors[f"track{i}.offset_distances"] = torch.stack(ev["dists"], 0).detach().numpy()  # (windows, 2*vshift+1)
        tensors[f"track{i}.window_confidence"] = np.asarray(ev["curve"], dtype=np.float32)
    sync_noise = 0.0
    for name, ev in sync["per_track"].items():
        ev2 = again["sync"]["per_track"][name]
        for key in ("lip", "aud"):
            sync_noise = max(sync_noise, float((torch.cat(ev[key]) - torch.cat(ev2[key])).abs().max()))
    crops_again = [again["rec"].crop_videos[v][0] for v in sorted(again["rec"].crop_videos)]
    crops_sorted = [run["rec"].crop_videos[v][0] for v in sorted(run["rec"].crop_videos)]
    assert all(np.array_equal(a, b) for a, b in zip(crops_sorted, crops_again)), "crops differ between runs"

    # StableSyncNet
    st, st2 = run["stable"], again["stable"]
    for key in ("mel", "mel_windows", "vision", "audio", "sims_fp32", "sims_fp16"):
        tensors[f"stable.{key}"] = np.asarray(st[key])
    tensors["stable.resized_u8"] = np.rint(np.asarray(st["resized"]) * 127.5 + 127.5).astype(np.uint8)
    tensors["stable.pairs"] = np.asarray(pairs, dtype=np.int64)
    stable_noise = noise({k: st[k] for k in ("vision", "audio", "sims_fp32")}, {k: st2[k] for k in ("vision", "audio", "sims_fp32")})

    save_png(out / "clip_frames.png", tile(clip))
    save_png(out / "wide_frames.png", tile(wide))
    save_png(out / "crops.png", tile(np.concatenate(crops)))
    save_png(out / "stable_frames.png", tile(frames32))
    save_png(out / "stable_frames_40.png", tile(frames40))
    write_wav(str(out / "clip_audio.wav"), audio)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, str(out / "outputs.safetensors"))
    (out / "stable_syncnet_config.json").write_text(json.dumps(STABLE_CONFIG, indent=1))
    (out / "upstream_shapes.json").write_text(json.dumps(shapes, indent=0, sort_keys=True))

    import cv2
    import scenedetect
    import scipy

    for path in sorted(out.iterdir()):
        files[path.name] = {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    track_summaries = [{"frames": [int(t["frame"][0]), int(t["frame"][-1])],
                        **sync["per_track"]["%05d" % i]["result"]} for i, t in enumerate(tracks)]
    manifest = {
        "upstream": {"repo": "bytedance/LatentSync", "commit": "a229c3948406bc2cf6eaf4873e662e70c6a04746"},
        "generated_with": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                           "opencv": cv2.__version__, "scenedetect": scenedetect.__version__, "scipy": scipy.__version__,
                           "python_speech_features": "0.6", "machine": platform.machine()},
        "files": files,
        "generation_params": {
            "weights": {"recipe": "latentsync.metrics.tiny", "seed": SEED, "s3fd_face_bias": S3FD_FACE_BIAS,
                        "digests": digests,
                        "note": "rebuild with tiny.syncnet_v2_state(seed), tiny.s3fd_state(seed, face_bias), "
                                "tiny.stable_syncnet_state(config, seed); save as plain state dicts "
                                "(syncnet_v2.model, sfd_face.pth) and {'state_dict': ...} (stable_syncnet.pt)"},
            "clip": {"frames": int(len(clip)), "fps": 25, "size": CLIP_SIZE, "parts": [PART1, PART2],
                     "source": "demo1 frames 0-21 face region (y0,x0,side)=%s, demo2 frames 0-15 %s, LANCZOS to %d px; "
                               "audio: the same frames' samples of demo1_audio.wav / demo2_audio.wav" % (DEMO1_FACE, DEMO2_FACE, CLIP_SIZE)},
            "wide": {"frames": int(len(wide)), "size": list(SCENE_SIZE), "source": "demo1 frames 0-1, demo2 frame 0 rows 400/100..+607, all 1080 columns"},
            "s3fd": {"frames": s3fd_names, "scale": 0.25, "conf_th": 0.9},
            "sync": {"min_track": MIN_TRACK, "min_face_size": 100, "vshift": 15, "batch_size": 20,
                     "scenes": sync["scenes"], "tracks": track_summaries, "num_tracks": len(tracks),
                     "av_offset": sync["av_offset"], "confidence": sync["conf"]},
            "stable_syncnet": {"config": "stable_syncnet_config.json", "resolution": STABLE_RES, "num_frames": 16,
                               "lower_half": True, "fps": 25, "batch_size": 4, "resize_from": STABLE_RESIZE_FROM,
                               "pairs": "stable.pairs rows (frame_start, audio_start, label)",
                               "accuracy_fp16": st["accuracy_fp16"], "threshold": 0.5},
        },
        "stats": {"rerun_max_abs_diff": {"s3fd": s3fd_noise, "syncnet_embeddings": sync_noise, "stable_syncnet": stable_noise},
                  "min_margin_to_threshold": {"s3fd_conf": float(min(np.abs(r["face_prob"] - 0.9).min() for r in run["s3fd"])),
                                              "best_offset_gap": best_offset_gap(sync["per_track"]),
                                              "stable_sims": float(np.abs(st["sims_fp32"] - 0.5).min())}},
        "tolerances": {"rerun_same_machine": "see stats.rerun_max_abs_diff", "observed": OBSERVED},
        "check": CHECK,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps({k: v["bytes"] for k, v in files.items()}, indent=1))
    print(json.dumps(manifest["stats"], indent=1))


if __name__ == "__main__":
    main()
