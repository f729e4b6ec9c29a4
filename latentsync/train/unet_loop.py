"""U-Net training on torch.distributed DDP (upstream's ``scripts/train_unet.py``), resumable bit for bit.

Each process takes ``data.batch_size`` samples per step; micro-step ``j`` hands samples ``[(j*W + r)*B, ...)`` to
rank ``r`` of ``W`` (the SyncNet trainer's ``RunBatches``), each drawn from its own generator. Every process seeds
the global generator with ``run.seed + rank`` (upstream's ``set_seed``), which the step's posterior samples, noise
and timesteps come from. Every ``ckpt.save_ckpt_steps`` steps and at the end, rank 0 writes
``checkpoints/checkpoint-<step>.pt`` (upstream's ``{"global_step", "state_dict"}`` + loss lists: upstream's
``ckpt.resume_ckpt_path`` and this pack's U-Net loader read it) and ``resume-<step>.pt`` (optimizer, lr schedule,
grad scaler, every rank's RNG states, the data position).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..models.unet import UNet3DConditionModel
from . import processes as procs_mod
from . import run_files
from .syncnet_config import ConfigError
from .syncnet_loop import RunBatches, _run_dir
from .unet_config import UNetTrainConfig
from .unet_losses import alphas_cumprod
from .unet_memory import enable_gradient_checkpointing, frozen_dtype, new_optimizer
from .unet_step import LossNets, StepPrecision, StepSettings, backward, compute_losses, select_trainable, update

log = logging.getLogger("latentsync.train")
RESUME_FORMAT = "latentsync-unet-resume/1"
NetsFactory = Callable[[UNetTrainConfig, torch.device, torch.dtype], LossNets]
DataFactory = Callable[[UNetTrainConfig, procs_mod.Processes], Dataset]


@dataclass
class UNetTrainResult:
    """Where the run is, how far it got, and its loss lists."""

    run_dir: Path
    global_step: int
    history: run_files.History
    last_checkpoint: Path | None
    is_main: bool = True


def step_settings(cfg: UNetTrainConfig, syncnet_resolution: int = 256, syncnet_lower_half: bool = True) -> StepSettings:
    """The step's settings from the config (and the SyncNet config's resolution / lower_half)."""
    r = cfg.run
    return StepSettings(num_frames=cfg.num_frames, resolution=cfg.resolution,
                        pixel_space_supervise=r["pixel_space_supervise"], use_syncnet=r["use_syncnet"],
                        recon_loss_weight=r["recon_loss_weight"], sync_loss_weight=r["sync_loss_weight"],
                        perceptual_loss_weight=r["perceptual_loss_weight"], trepa_loss_weight=r["trepa_loss_weight"],
                        use_mixed_noise=r["use_mixed_noise"], mixed_noise_alpha=r["mixed_noise_alpha"],
                        syncnet_resolution=syncnet_resolution, syncnet_lower_half=syncnet_lower_half)


def precision_for(cfg: UNetTrainConfig, device: torch.device) -> StepPrecision:
    """fp16 autocast + grad scaler (upstream) or bf16 autocast on CUDA; float32 on the CPU."""
    fdt = frozen_dtype(cfg.frozen_dtype, cfg.precision, device)
    if device.type != "cuda" or cfg.precision == "fp32":
        return StepPrecision(device, None, fdt, None)
    if cfg.precision == "bf16":
        return StepPrecision(device, torch.bfloat16, fdt, None)
    return StepPrecision(device, torch.float16, fdt, torch.amp.GradScaler("cuda"))


def lr_lambda(kind: str, warmup: int) -> Callable[[int], float]:
    """diffusers' ``constant`` / ``constant_with_warmup`` schedules as a LambdaLR factor."""
    if kind == "constant" or warmup <= 0:
        return lambda step: 1.0
    return lambda step: min(1.0, step / max(1.0, warmup))


def warm_start(unet: UNet3DConditionModel, path: str) -> int:
    """Upstream's ``resume_ckpt_path``: load its weights (missing keys allowed, as upstream: stage1 -> stage2) and
    return its ``global_step``."""
    from ..models.checkpoint import extract_state_dict, read_checkpoint

    if not os.path.isfile(path):
        raise ConfigError(f"config key 'ckpt.resume_ckpt_path' is {path!r}, which is not a file; give a U-Net "
                          f"checkpoint (latentsync_unet.pt, checkpoint-<step>.pt) or write \"\".")
    data = read_checkpoint(path)
    state = extract_state_dict(data, path)
    try:
        result = unet.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ConfigError(f"{path} does not fit the config's U-Net: {exc}") from exc
    if result.unexpected_keys:
        raise ConfigError(f"{path} has {len(result.unexpected_keys)} keys the config's U-Net lacks (e.g. "
                          f"{result.unexpected_keys[0]}); is model.use_motion_module / motion_module_decoder_only right?")
    if result.missing_keys:
        log.info("%s: %d keys not in the file start from their initial values (e.g. %s)", path,
                 len(result.missing_keys), result.missing_keys[0])
    return int(data.get("global_step", 0)) if isinstance(data, dict) else 0


def _save(run_dir: Path, unet: UNet3DConditionModel, optimizer: torch.optim.Optimizer, scheduler, precision: StepPrecision,
          step: int, micro: int, history: run_files.History, procs: procs_mod.Processes, resolution: int) -> Path:
    """Every rank's RNG to rank 0, which writes the weights checkpoint (+ config sidecar), then the resume file."""
    rng = procs_mod.gather_objects(run_files.rng_state(procs.device), procs)
    path = run_files.checkpoint_path(run_dir, step)
    if procs.is_main:
        run_files.save_weights(run_dir, unet.state_dict(), step, history)
        sidecar = {"model": unet.config, "resolution": resolution}  # what the pack's loader reads beside a .pt
        run_files.atomic_text(json.dumps(sidecar, indent=1), path.with_suffix(".json"))
        run_files.atomic_save({"format": RESUME_FORMAT, "global_step": step, "next_micro_step": micro,
                               "world_size": procs.world_size, "optimizer": optimizer.state_dict(),
                               "lr_scheduler": scheduler.state_dict(),
                               "scaler": None if precision.scaler is None else precision.scaler.state_dict(),
                               "rng": rng, "history": history.as_dict()}, run_files.resume_path(run_dir, step))
    procs_mod.barrier(procs)
    return path


def _resume(run_dir: Path, unet: UNet3DConditionModel, optimizer, scheduler, precision: StepPrecision,
            procs: procs_mod.Processes) -> tuple[int, int, run_files.History]:
    """Weights, optimizer, schedule, scaler, RNG and data position of the newest resume file."""
    data = torch.load(run_files.latest_resume(run_dir), map_location="cpu", weights_only=True)
    if data.get("format") != RESUME_FORMAT:
        raise ConfigError(f"{run_dir} holds no U-Net resume files ({RESUME_FORMAT}).")
    if data["world_size"] != procs.world_size:
        raise ConfigError(f"the run was made with {data['world_size']} processes; resume it with the same number "
                          f"(now {procs.world_size}) to continue its batches and random numbers.")
    step = int(data["global_step"])
    weights = torch.load(run_files.checkpoint_path(run_dir, step), map_location="cpu", weights_only=True)
    unet.load_state_dict(weights["state_dict"], strict=True)
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["lr_scheduler"])
    if precision.scaler is not None and data.get("scaler"):
        precision.scaler.load_state_dict(data["scaler"])
    run_files.set_rng_state(data["rng"][procs.rank], procs.device)
    return step, int(data["next_micro_step"]), run_files.History.from_dict(data["history"])


def train_unet(cfg: UNetTrainConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
               device: str | None = None, stop_after: int | None = None, log_every: int = 10,
               nets_factory: NetsFactory | None = None, data_factory: DataFactory | None = None,
               init_state: dict[str, torch.Tensor] | None = None) -> UNetTrainResult:
    """Train (or continue) a U-Net run; ``stop_after`` ends this part at that step (saved). The factories and
    ``init_state`` (initial weights) let tests give tiny nets and data."""
    procs = procs_mod.start(device)
    try:
        return _train(cfg, out, resume, procs, stop_after, log_every, nets_factory or _real_nets,
                      data_factory or _real_data, init_state)
    finally:
        procs_mod.finish(procs)


def _train(cfg: UNetTrainConfig, out, resume: bool, procs: procs_mod.Processes, stop_after: int | None,
           log_every: int, nets_factory: NetsFactory, data_factory: DataFactory,
           init_state: dict[str, torch.Tensor] | None) -> UNetTrainResult:
    """The run itself, inside a started process group."""
    if (cfg.run["trepa_loss_weight"] != 0 and cfg.run["pixel_space_supervise"] and nets_factory is _real_nets
            and not os.path.isfile(cfg.paths.get("videomae", ""))):
        raise ConfigError(f"run.trepa_loss_weight is not 0: TREPA needs VideoMAE-v2 ViT-g; config key 'paths.videomae' "
                          f"is {cfg.paths.get('videomae', '')!r}; give vit_g_hybrid_pt_1200e_ssv2_ft.pth or write "
                          f"run.trepa_loss_weight: 0 (stage2_efficient does).")
    run_dir = _run_dir(cfg, out, resume, procs)
    torch.manual_seed(cfg.seed)  # the same initial weights on every process
    unet = UNet3DConditionModel(cfg.model)
    step, history = 0, run_files.History()
    if init_state is not None:
        unet.load_state_dict(init_state, strict=True)
    if cfg.resume_ckpt_path and not resume:
        step = warm_start(unet, cfg.resume_ckpt_path)
    trainable = select_trainable(unet, bool(cfg.model.get("use_motion_module", False)), cfg.run["trainable_modules"])
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(unet)
    unet.to(procs.device).train()
    precision = precision_for(cfg, procs.device)
    nets = nets_factory(cfg, procs.device, precision.frozen_dtype)
    params = [p for p in unet.parameters() if p.requires_grad]
    lr = cfg.lr * procs.world_size if cfg.scale_lr else cfg.lr
    optimizer = new_optimizer(params, cfg.optimizer, lr, procs.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.lr_scheduler, cfg.lr_warmup_steps))
    torch.manual_seed(cfg.seed + procs.rank)  # upstream's set_seed(seed + rank): this process's draws
    if procs.device.type == "cuda":
        torch.cuda.manual_seed(cfg.seed + procs.rank)
    micro = 0
    if resume:
        step, micro, history = _resume(run_dir, unet, optimizer, scheduler, precision, procs)
    ddp = DistributedDataParallel(unet, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)
    # its own generator: a loader iterator draws a base seed, which must not shift the global stream on resume
    batches: Iterator = iter(DataLoader(data_factory(cfg, procs), num_workers=cfg.num_workers,
                                        batch_sampler=RunBatches(micro, cfg.batch_size, procs.rank, procs.world_size),
                                        generator=torch.Generator().manual_seed(cfg.seed)))
    settings = step_settings(cfg, *(nets.syncnet_geometry or (cfg.resolution, True)))
    abar = alphas_cumprod()
    last: Path | None = None
    if procs.is_main:
        log.info("run folder %s: %d process(es) on %s, %d trainable tensors (%.2f M values), steps %d -> %d",
                 run_dir, procs.world_size, procs.device, len(trainable), sum(p.numel() for p in params) / 1e6,
                 step, cfg.max_train_steps)
    while step < cfg.max_train_steps and (stop_after is None or step < stop_after):
        losses = compute_losses(ddp, nets, next(batches), settings, abar, precision)
        backward(losses, precision)
        micro += 1
        step_loss = procs_mod.mean_over_processes(losses.parts["loss"], procs)
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"the training loss is {step_loss} at step {step + 1}; lower optimizer.lr.")
        norm = update(params, optimizer, cfg.max_grad_norm, precision)
        scheduler.step()
        step += 1
        history.train_step_list.append(step)
        history.train_loss_list.append(step_loss)
        if procs.is_main and (step == 1 or step % log_every == 0 or step == cfg.max_train_steps):
            parts = ", ".join(f"{k} {v:.4f}" for k, v in losses.parts.items() if k != "loss")
            log.info("step %d/%d: loss %.4f (%s), grad norm %.3f", step, cfg.max_train_steps, step_loss, parts, norm)
        if step % cfg.save_ckpt_steps == 0 or step == cfg.max_train_steps or step == stop_after:
            last = _save(run_dir, unet, optimizer, scheduler, precision, step, micro, history, procs, cfg.resolution)
    return UNetTrainResult(run_dir, step, history, last, procs.is_main)


def _real_nets(cfg: UNetTrainConfig, device: torch.device, dtype: torch.dtype) -> LossNets:
    """VAE (paths.vae), StableSyncNet (data.syncnet_config_path), LPIPS (paths.lpips_*) as the config needs."""
    import yaml

    from ..metrics.stable_syncnet import load_stable_syncnet
    from ..pipeline.vae import load_diffusers_vae
    from .lpips_loss import load_lpips_vgg

    def need(key: str) -> str:
        """An existing file or folder named by ``paths.<key>``."""
        value = cfg.paths.get(key, "")
        if not value or not os.path.exists(value):
            raise ConfigError(f"config key 'paths.{key}' is {value!r}, which does not exist; give the file.")
        return value

    vae = load_diffusers_vae(need("vae"), device=device, dtype=dtype).vae
    vae.requires_grad_(False)
    if cfg.run["pixel_space_supervise"]:  # upstream: the decoder's activations are recomputed in the backward pass
        vae.enable_gradient_checkpointing()
    nets = LossNets(vae)
    r = cfg.run
    if r["use_syncnet"]:
        with open(cfg.syncnet_config_path, encoding="utf-8") as handle:
            sync_cfg = yaml.safe_load(handle)
        ckpt = sync_cfg.get("ckpt", {}).get("inference_ckpt_path", "")
        if not ckpt:
            raise ConfigError(f"{cfg.syncnet_config_path}: ckpt.inference_ckpt_path is empty; the SyncNet loss needs it.")
        nets.syncnet = load_stable_syncnet(ckpt, sync_cfg["model"], device=device, dtype=dtype)
        nets.syncnet.requires_grad_(False)
        nets.syncnet_geometry = (int(sync_cfg["data"]["resolution"]), bool(sync_cfg["data"].get("lower_half", True)))
    if r["pixel_space_supervise"] and r["perceptual_loss_weight"] != 0:
        nets.lpips = load_lpips_vgg(need("lpips_vgg16"), need("lpips_lin")).to(device)
    if r["pixel_space_supervise"] and r["trepa_loss_weight"] != 0:  # upstream: float16, block checkpointing
        from .videomae import load_videomae

        nets.trepa_features = load_videomae(need("videomae"), device=device, dtype=dtype).forward_features
    return nets


def _real_data(cfg: UNetTrainConfig, procs: procs_mod.Processes) -> Dataset:
    """Upstream's samples from the config's clips, with whisper windows from paths.whisper."""
    from ..data.syncnet_samples import list_clips
    from ..face.mask import fixed_mask, load_mask_image
    from ..data.unet_samples import UNetSamples, whisper_clip_loader

    paths = list_clips(cfg.train_data_dir, cfg.train_fileslist)
    mask = load_mask_image(cfg.mask_image_path, cfg.resolution) if cfg.mask_image_path and os.path.isfile(
        cfg.mask_image_path) else fixed_mask(cfg.resolution)
    whisper = cfg.paths.get("whisper", "")
    if cfg.model.get("add_audio_layer", False) and not os.path.isfile(whisper):
        raise ConfigError(f"config key 'paths.whisper' is {whisper!r}; give whisper tiny.pt (cross_attention_dim "
                          f"384) or small.pt (768).")
    loader = whisper_clip_loader(whisper, fps=cfg.video_fps, feat_length=cfg.audio_feat_length)
    return UNetSamples(paths, loader, num_frames=cfg.num_frames, resolution=cfg.resolution, fps=cfg.video_fps,
                       seed=cfg.seed, mask=mask, need_mel=bool(cfg.run["use_syncnet"]))
