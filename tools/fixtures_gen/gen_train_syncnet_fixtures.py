"""Write tests/fixtures/train_syncnet/: upstream LatentSync's ``scripts/train_syncnet.py`` run for two steps.

Imports upstream's own code from an extracted checkout (``--upstream`` or $LS_UPSTREAM, commit a229c39) and runs
its ``main(config)`` unchanged on a tiny config: ``SyncNetDataset`` (draws, mel, windows, frame processing),
DDP, ``cosine_loss``, clipping, AdamW, upstream's checkpoint files. Nothing of upstream is copied here. What stands
in for hardware and decoders (see README.md):

* no GPU: ``init_dist`` starts a one-process gloo group instead of NCCL; ``torch.device(rank)`` gives the CPU;
  DDP gets no ``device_ids``; upstream's float16 input casts become float32 (its autocast and GradScaler turn
  themselves off without CUDA, so the step runs in float32, as this pack's CPU path);
* decord's ``VideoReader`` / ``AudioReader`` serve the fixture's frames and 16 kHz samples exactly;
* the dataset is read in this process (``num_workers: 0``) as worker 0 (upstream sets ``worker_id`` only in
  loader workers and otherwise retries forever), so its draws come from the global ``random`` seeded with
  ``run.seed``.

Recorded: every random draw of the dataset, each sample, per-sample losses and embeddings, gradients before
clipping and their norm (step 1), the losses of both steps, and upstream's checkpoint after step 2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import types
from pathlib import Path

import numpy as np

from upstream_env import check_from_upstream, load_ours, parse_args, use_upstream  # this folder: run as a script

REPO = Path(__file__).resolve().parents[2]
SEED = 1247  # initial weights (latentsync.metrics.tiny recipe)
RUN_SEED = 42  # upstream's run.seed
RESOLUTION, SOURCE_SIZE = 32, 40
# Both towers end at 32 x 2 x 2 (embedding 128): GroupNorm's groups hold 4 values. (At 1 x 1 a group holds one
# value, the norm returns rounding noise, and results change with the thread count.)
TINY_CONFIG = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32, 32], "downsample_factors": [[4, 2], 4, [2, 3]],
                      "attn_blocks": [0, 1, 0], "dropout": 0.0},
    "visual_encoder": {"in_channels": 48, "block_out_channels": [32, 32, 32], "downsample_factors": [[2, 4], 4, 1],
                       "attn_blocks": [0, 1, 0], "dropout": 0.0},
}
# Clips: (video, face region (y0, x0, side), first frame, frames, audio frames). Clip 1's audio stops 2 frames
# early (late starts need a redraw); clip 2 is shorter than two windows (upstream skips it).
DEMO1_FACE, DEMO2_FACE = (480, 352, 448), (160, 292, 520)
CLIPS = [("demo1", DEMO1_FACE, 0, 40, 40), ("demo2", DEMO2_FACE, 0, 36, 34), ("demo1", DEMO1_FACE, 100, 20, 20)]
STEPS, BATCH = 2, 2
EXTRA_SEED, EXTRA_DRAWS = 7, 300
CHECK = {
    "_about": "bounds for a float32 CPU re-implementation, read by tests/parity/test_train_syncnet_parity.py",
    "draws": "exact", "frames_uint8": {"max_abs_diff": 0}, "mel": {"atol": 1e-9}, "y": "exact",
    "loss": {"atol": 1e-6}, "sample_losses": {"atol": 1e-6}, "embeddings": {"atol": 1e-6},
    "grads": {"atol_relative_to_max": 1e-5}, "grad_norm": {"rtol": 1e-5},
    "weights_after": {"atol": 1e-6, "note": "at the generator's thread count; Adam's first steps divide each gradient "
                                            "by its size, so rounding in a near-zero gradient can move a weight by lr"},
}

OBSERVED = {
    "_about": "tests/parity/test_train_syncnet_parity.py on the generator machine, torch 2.13 CPU float32",
    "draws, frames, labels": "exact; mel windows within 1e-13 (float64)",
    "1 thread (the generator's)": "embeddings, losses, gradients, norms, weights after 2 steps: exact",
    "2 threads": "losses 6.0e-7, gradients 8.0e-7 (largest 0.585), norm 2.6e-6 relative, weights after 2 AdamW "
                 "steps 6.2e-4 (lr 1e-3: Adam's first steps normalise each gradient by its own size)",
}


def decode_frames(path: Path, first: int, count: int) -> np.ndarray:
    import av

    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= first:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return np.stack(out)


def face_clip(frames: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image

    y0, x0, side = box
    return np.stack([np.asarray(Image.fromarray(f[y0:y0 + side, x0:x0 + side]).resize((SOURCE_SIZE, SOURCE_SIZE), Image.LANCZOS))
                     for f in frames])


def read_wav(path: Path) -> np.ndarray:
    from scipy.io import wavfile

    rate, data = wavfile.read(str(path))
    assert rate == 16000 and data.dtype == np.int16 and data.ndim == 1, (path, rate, data.dtype)
    return data


class Decoded:
    """decord's NDArray stand-in."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def asnumpy(self) -> np.ndarray:
        return self.array


def decord_stand_ins(clips: dict[str, tuple[np.ndarray, np.ndarray]]):
    """VideoReader / AudioReader classes serving exact frames and float32 samples for the fixture's paths."""

    class VideoReader:
        def __init__(self, path, ctx=None):
            self.frames = clips[os.path.basename(path)][0]

        def __len__(self):
            return len(self.frames)

        def get_batch(self, index):
            return Decoded(self.frames[np.asarray(index)])

        def seek(self, pos):
            pass

    class AudioReader:
        def __init__(self, path, ctx=None, sample_rate=16000):
            assert sample_rate == 16000
            self.samples = (clips[os.path.basename(path)][1].astype(np.float32) / 32768.0)[None]

        def __getitem__(self, item):
            return Decoded(self.samples[:, item])

    return VideoReader, AudioReader


class TorchOnCpu(types.ModuleType):
    """``torch`` as the training script sees it on a machine without a GPU: devices are the CPU, float16 casts
    are float32 (everything else is torch itself)."""

    def __init__(self, torch):
        super().__init__("torch")
        self._torch = torch
        self.float16 = torch.float32

    def device(self, *args, **kwargs):
        return self._torch.device("cpu")

    def __getattr__(self, name):
        return getattr(self._torch, name)


def run_upstream(upstream: str, workdir: str, clips: dict, init_path: str) -> dict:
    """Run ``train_syncnet.main`` for two steps and record what it computes."""
    import random

    import torch
    import torch.distributed as dist
    from omegaconf import OmegaConf

    use_upstream(upstream, workdir)  # configs read relative to the working directory
    import latentsync.data.syncnet_dataset as data_mod
    import latentsync.utils.util as util_mod

    spec = importlib.util.spec_from_file_location("train_syncnet", os.path.join(upstream, "scripts", "train_syncnet.py"))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    check_from_upstream(data_mod, upstream)

    rec: dict = {"calls": [], "samples": [], "loss_calls": [], "grads": [], "norms": [], "models": []}
    data_mod.VideoReader, data_mod.AudioReader = decord_stand_ins(clips)
    data_mod.cpu = lambda *a, **k: None
    # Upstream only sets worker_id in DataLoader workers (worker_init_fn): with num_workers 0 every read fails
    # and __getitem__ retries forever. The draws are recorded in this process (num_workers 0), as worker 0.
    data_mod.SyncNetDataset.worker_id = 0

    class RecordedRandom:
        def randint(self, a, b):
            v = random.randint(a, b)
            rec["calls"].append((0, a, b, v))
            return v

        def choice(self, seq):
            v = random.choice(seq)
            rec["calls"].append((1, 0, 1, int(v)))
            return v

    data_mod.random = RecordedRandom()
    real_getitem = data_mod.SyncNetDataset.__getitem__

    def getitem(self, idx):
        start = len(rec["calls"])
        sample = real_getitem(self, idx)
        rec["samples"].append({"calls": (start, len(rec["calls"])), **{k: v.clone() for k, v in sample.items()}})
        return sample

    data_mod.SyncNetDataset.__getitem__ = getitem

    def init_dist(backend="nccl", **kwargs):
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        return 0

    real_cosine_loss = util_mod.cosine_loss

    def cosine_loss(vision, audio, y):
        losses = real_cosine_loss(vision, audio, y)
        rec["loss_calls"].append({"vision": vision.detach().clone(), "audio": audio.detach().clone(),
                                  "losses": losses.detach().clone()})
        return losses

    real_model_cls = train.StableSyncNet

    def make_model(config):
        model = real_model_cls(config)
        rec["models"].append(model)
        return model

    real_clip = torch.nn.utils.clip_grad_norm_

    def clip_grad_norm_(params, max_norm, *args, **kwargs):
        params = list(params)
        names = {id(p): n for n, p in rec["models"][0].named_parameters()}
        rec["grads"].append({names[id(p)]: p.grad.detach().clone() for p in params})
        norm = real_clip(params, max_norm, *args, **kwargs)
        rec["norms"].append(float(norm))
        return norm

    train.init_dist = init_dist
    train.torch = TorchOnCpu(torch)
    train.DDP = lambda module, device_ids=None, output_device=None: torch.nn.parallel.DistributedDataParallel(module)
    train.cosine_loss = cosine_loss
    train.StableSyncNet = make_model
    torch.nn.utils.clip_grad_norm_ = clip_grad_norm_
    with open("files.txt", "w") as handle:
        handle.write("".join(f"{name}\n" for name in clips))
    config = {
        "model": TINY_CONFIG,
        "ckpt": {"resume_ckpt_path": os.path.relpath(init_path, workdir), "inference_ckpt_path": "", "save_ckpt_steps": 1},
        "data": {"train_output_dir": "out", "num_val_samples": 2, "batch_size": BATCH, "gradient_accumulation_steps": 1,
                 "num_workers": 0, "latent_space": False, "num_frames": 16, "resolution": RESOLUTION,
                 "train_fileslist": "files.txt", "train_data_dir": "", "val_fileslist": "files.txt", "val_data_dir": "",
                 "audio_mel_cache_dir": "mel_cache", "lower_half": True, "audio_sample_rate": 16000, "video_fps": 25},
        "optimizer": {"lr": 1e-3, "max_grad_norm": 1.0},
        "run": {"max_train_steps": STEPS, "validation_steps": 1000, "mixed_precision_training": True, "seed": RUN_SEED},
    }
    OmegaConf.save(OmegaConf.create(config), "config.yaml")
    cfg = OmegaConf.load("config.yaml")
    cfg.config_path = "config.yaml"
    try:
        train.main(cfg)
    finally:
        torch.nn.utils.clip_grad_norm_ = real_clip
        if dist.is_initialized():
            dist.destroy_process_group()
    # More draws of upstream's dataset on its own (seeded afresh), for the rarer paths: a redraw when the wrong
    # start equals the start, and when clip 1's audio ends before the window.
    dataset = data_mod.SyncNetDataset("", "files.txt", cfg)
    kept = len(rec["samples"])
    random.seed(EXTRA_SEED)
    first = len(rec["calls"])
    for _ in range(EXTRA_DRAWS):
        dataset[0]
    rec["extra_calls"] = rec["calls"][first:]
    del rec["calls"][first:], rec["samples"][kept:]
    run_dir = next(Path("out").iterdir())
    rec["checkpoints"] = {int(p.stem.split("-")[1]): torch.load(p, weights_only=True)
                          for p in (run_dir / "checkpoints").glob("checkpoint-*.pt")}
    rec["config"] = config
    return rec


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "train_syncnet", "scripts/train_syncnet.py")
    upstream, media, out = os.path.abspath(args.upstream), Path(args.media).resolve(), Path(args.out).resolve()
    ours = load_ours()
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    clips: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, (name, box, first, frames, audio_frames) in enumerate(CLIPS):
        video = face_clip(decode_frames(media / f"{name}_video.mp4", first, frames), box)
        wav = read_wav(media / f"{name}_audio.wav")[first * 640:(first + audio_frames) * 640]
        clips[f"clip{i}.mp4"] = (video, wav)
    init_state = ours.metrics.tiny.stable_syncnet_state(TINY_CONFIG, SEED)
    workdir = tempfile.mkdtemp(prefix="train_syncnet_fixtures_")
    try:
        init_path = os.path.join(workdir, "init.pt")
        torch.save({"state_dict": init_state}, init_path)
        rec = run_upstream(upstream, workdir, clips, init_path)
    finally:
        os.chdir(REPO)
        shutil.rmtree(workdir, ignore_errors=True)
    write_fixture(out, clips, rec, ours.metrics.tiny.state_digest(init_state))


def write_fixture(out: Path, clips: dict, rec: dict, init_digest: str) -> None:
    """Inputs, upstream's draws, samples, losses, gradients and weights, and the manifest."""
    import torch
    from safetensors.torch import save_file

    assert len(rec["samples"]) == STEPS * BATCH, len(rec["samples"])
    assert len(rec["loss_calls"]) == STEPS and len(rec["grads"]) == STEPS
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    t: dict[str, torch.Tensor] = {}
    for i, (name, (video, wav)) in enumerate(clips.items()):
        t[f"clip{i}.frames"] = torch.from_numpy(video)
        t[f"clip{i}.wav_int16"] = torch.from_numpy(wav.astype(np.int16))
    t["draw_calls"] = torch.tensor(rec["calls"], dtype=torch.int64)  # (kind 0 randint / 1 choice, a, b, value)
    t["extra_draw_calls"] = torch.tensor(rec["extra_calls"], dtype=torch.int64)
    extra = rec["extra_calls"]
    equal_starts = sum(1 for a, b in zip(extra, extra[1:]) if a[0] == b[0] == 0 and a[2] == b[2] > 2 and a[3] == b[3])
    assert equal_starts > 0, "no wrong start equal to the start among the extra draws; raise EXTRA_DRAWS"
    for k, s in enumerate(rec["samples"]):
        u8 = torch.round(s["frames"] * 127.5 + 127.5)
        assert torch.equal((u8 / 255.0 - 0.5) / 0.5, s["frames"]), "frames are not uint8 levels"
        t[f"sample{k}.frames_u8"] = u8.to(torch.uint8)
        t[f"sample{k}.mel"] = s["audio_samples"]
        t[f"sample{k}.y"] = s["y"]
        t[f"sample{k}.calls"] = torch.tensor(s["calls"], dtype=torch.int64)
    for step, call in enumerate(rec["loss_calls"], 1):
        t[f"step{step}.vision"], t[f"step{step}.audio"] = call["vision"], call["audio"]
        t[f"step{step}.sample_losses"] = call["losses"]
    for name, g in rec["grads"][0].items():
        t[f"grad1.{name}"] = g
    final = rec["checkpoints"][STEPS]
    for name, w in final["state_dict"].items():
        t[f"weights{STEPS}.{name}"] = w
    save_file({k: v.contiguous() for k, v in t.items()}, str(out / "outputs.safetensors"))
    (out / "config.json").write_text(json.dumps(rec["config"], indent=1))
    import omegaconf

    files = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in sorted(out.iterdir())}
    manifest = {
        "upstream": {"repo": "bytedance/LatentSync", "commit": "a229c3948406bc2cf6eaf4873e662e70c6a04746",
                     "ran": "scripts/train_syncnet.py main(config), latentsync/data/syncnet_dataset.py"},
        "generated_with": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                           "omegaconf": omegaconf.__version__, "machine": platform.machine(), "threads": 1},
        "files": files,
        "generation_params": {
            "initial_weights": {"recipe": "latentsync.metrics.tiny.stable_syncnet_state(config, seed)", "seed": SEED,
                                "digest": init_digest, "given_as": "ckpt.resume_ckpt_path ({'state_dict': ...})"},
            "config": "config.json (upstream's yaml as JSON; model = the tiny towers)",
            "clips": [{"name": n, "source": f"{v}_video.mp4 frames {f}..{f + c - 1}, face region {b} LANCZOS to "
                       f"{SOURCE_SIZE}px; {v}_audio.wav samples of {a} frames", "frames": c, "audio_frames": a}
                      for n, (v, b, f, c, a) in zip(clips, CLIPS)],
            "run_seed": RUN_SEED, "steps": STEPS, "batch_size": BATCH, "world_size": 1,
            "extra_draws": {"seed": EXTRA_SEED, "count": EXTRA_DRAWS, "calls": "extra_draw_calls",
                            "what": "upstream's __getitem__ called on its own after random.seed(seed)"},
            "cpu_stand_ins": "one-process gloo group, CPU device, float16 casts as float32 (autocast and GradScaler "
                             "off without CUDA), decord readers serving these frames and samples",
        },
        "results": {"step_losses": [float(x) for x in rec["checkpoints"][STEPS]["train_loss_list"]],
                    "checkpoint_keys": {k: type(v).__name__ for k, v in sorted(final.items())},
                    "grad_norms": rec["norms"], "global_step": int(final["global_step"])},
        "check": CHECK,
        "tolerances": {"observed": OBSERVED},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps({"files": {k: v["bytes"] for k, v in files.items()}, "results": manifest["results"]}, indent=1))


if __name__ == "__main__":
    main()
