"""A tiny StableSyncNet training on the demo clips (../shared/media): does the loss go down? (numbers for the note)

Cuts each demo video into 5 s face clips (a fixed face box, resized to 64 px, H.264 + AAC with the demo's wav),
keeps the last clip of each video for validation, writes an upstream-format yaml (the parity fixture's tiny towers
at resolution 32, or 64 with one more downsampling) and runs ``latentsync train syncnet`` on it through the
library on the CPU. Prints the mean train loss per 25 steps and the validation loss / accuracy.

    python tools/train_syncnet_tiny.py [--work /tmp/syncnet_tiny] [--steps 300] [--media ../shared/media]
    python tools/train_syncnet_tiny.py --fixed-batch --steps 150     # one batch again and again: can it fit?
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from training_clips import write_clip  # this folder: run as a script

REPO = Path(__file__).resolve().parents[1]
FACES = {"demo1": (480, 352, 448), "demo2": (160, 292, 520)}  # (y0, x0, side) in the 1080x1920 frames
SIZE, SEGMENT = 64, 125  # clip side in px, frames per clip (5 s at 25 fps)


def face_frames(path: Path, box: tuple[int, int, int]) -> np.ndarray:
    """Every frame's face box, LANCZOS-resized to SIZE."""
    import av
    from PIL import Image

    y0, x0, side = box
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")[y0:y0 + side, x0:x0 + side]
            out.append(np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.LANCZOS)))
    return np.stack(out)


def make_clips(media: Path, folder: Path) -> tuple[list[Path], list[Path]]:
    """(train clips, validation clips): 5 s pieces of each demo, the last piece of each held out."""
    from scipy.io import wavfile

    folder.mkdir(parents=True, exist_ok=True)
    train, val = [], []
    for name, box in FACES.items():
        frames = face_frames(media / f"{name}_video.mp4", box)
        rate, wav = wavfile.read(str(media / f"{name}_audio.wav"))
        assert rate == 16000 and wav.dtype == np.int16
        pieces = len(frames) // SEGMENT
        for i in range(pieces):
            part = frames[i * SEGMENT:(i + 1) * SEGMENT]
            sound = wav[i * SEGMENT * 640:(i + 1) * SEGMENT * 640]
            clip = write_clip(folder / f"{name}_{i}.mp4", part, sound)
            (val if i == pieces - 1 else train).append(clip)
    return train, val


def fixed_batch(cfg, steps: int) -> None:
    """The training step on the run's first batch, ``steps`` times: the loss of a batch the model can fit."""
    import torch

    from latentsync.data.syncnet_samples import SyncNetSamples, list_clips
    from latentsync.metrics.stable_syncnet import StableSyncNet
    from latentsync.train.syncnet_step import Precision, backward, new_optimizer, update

    data = SyncNetSamples(list_clips("", cfg.train_fileslist), num_frames=cfg.num_frames, resolution=cfg.resolution,
                          fps=cfg.video_fps, seed=cfg.seed)
    items = [data[k] for k in range(cfg.batch_size)]
    batch = {key: torch.stack([it[key] for it in items]) for key in items[0]}
    torch.manual_seed(cfg.seed)
    model = StableSyncNet(cfg.model).train()
    optimizer, precision = new_optimizer(model, cfg.lr), Precision(torch.device("cpu"))
    labels = batch["y"].flatten().tolist()
    print(f"one batch of {len(labels)} samples ({int(sum(labels))} in sync), {steps} steps, lr {cfg.lr}")
    for step in range(1, steps + 1):
        loss = backward(model, batch, lower_half=cfg.lower_half, accumulation=1, precision=precision)
        update(model.parameters(), optimizer, cfg.max_grad_norm, precision)
        if step == 1 or step % 10 == 0:
            print(f"step {step:4d}  loss {float(loss):.4f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/syncnet_tiny")
    p.add_argument("--media", default=str(REPO.parent / "shared" / "media"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fixed-batch", action="store_true", help="train on one fixed batch (samples 0..batch-1)")
    p.add_argument("--resolution", type=int, default=32, choices=(32, 64), help="face size the model sees")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    import yaml

    from latentsync.train.syncnet_config import load_config
    from latentsync.train.syncnet_loop import train_syncnet

    work = Path(args.work)
    train, val = make_clips(Path(args.media), work / "clips")
    (work / "train.txt").write_text("".join(f"{c}\n" for c in train))
    (work / "val.txt").write_text("".join(f"{c}\n" for c in val))
    model = json.loads((REPO / "tests" / "fixtures" / "train_syncnet" / "config.json").read_text())["model"]
    if args.resolution == 64:  # lower half 32 x 64 -> 2 x 2, as the audio tower
        model["visual_encoder"]["downsample_factors"] = [[2, 4], [4, 4], [2, 2]]
    config = {
        "model": model,
        "ckpt": {"resume_ckpt_path": "", "inference_ckpt_path": "", "save_ckpt_steps": 100},
        "data": {"train_output_dir": str(work), "num_val_samples": 64, "batch_size": args.batch,
                 "gradient_accumulation_steps": 1, "num_workers": 0, "latent_space": False, "num_frames": 16,
                 "resolution": args.resolution, "train_fileslist": str(work / "train.txt"), "train_data_dir": "",
                 "val_fileslist": str(work / "val.txt"), "val_data_dir": "", "audio_mel_cache_dir": "",
                 "lower_half": True, "audio_sample_rate": 16000, "video_fps": 25},
        "optimizer": {"lr": args.lr, "max_grad_norm": 1.0},
        "run": {"max_train_steps": args.steps, "validation_steps": 50, "mixed_precision_training": True, "seed": 42},
    }
    cfg_path = work / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if args.fixed_batch:
        fixed_batch(load_config(cfg_path), args.steps)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run_dir = work / f"run-{time.strftime('%H%M%S')}"
    start = time.monotonic()
    result = train_syncnet(load_config(cfg_path), run_dir, device="cpu", log_every=25)
    seconds = time.monotonic() - start
    h = result.history
    print(f"\n{len(train)} train clips, {len(val)} val clips; {args.steps} steps of {args.batch} in {seconds:.0f} s")
    print("steps      mean train loss")
    for first in range(0, len(h.train_loss_list), 25):
        window = h.train_loss_list[first:first + 25]
        print(f"{first + 1:4d}-{first + len(window):<4d}  {sum(window) / len(window):.4f}")
    print("step  val loss  val accuracy")
    for step, loss, acc in zip(h.val_step_list, h.val_loss_list, h.val_accuracy_list):
        print(f"{step:4d}  {loss:.4f}    {acc:.3f}")
    print(f"run folder: {run_dir}")


if __name__ == "__main__":
    main()
