"""LoadLatentSyncModel: U-Net + Whisper (as ModelPatchers) and the SD VAE, from ComfyUI's model folders."""

from __future__ import annotations

import logging
import os
from typing import Any

from . import paths
from .types import MODEL

MODEL_FILES_HEADING = "Model files (ComfyUI/models/...):"  # web/latentsync.js finds the layout after this line


class _ReadOnFirstUse:
    """A class attribute computed when ComfyUI first reads it (importing the pack imports no library module)."""

    def __init__(self, build):
        self.build = build

    def __get__(self, obj, owner) -> str:
        return self.build()


def _description() -> str:
    """The loader's help, ending with the model-file layout from latentsync/model_files.py (the one table)."""
    from ..latentsync.model_files import layout_lines

    return (
        "Loads a LatentSync 1.5 (256 px) or 1.6 (512 px) U-Net, the Whisper tiny audio encoder and the "
        "sd-vae-ft-mse VAE from models/latentsync and models/vae. Official files missing on disk are downloaded "
        "from Hugging Face when download is allowed; offline, the error lists each file and where to put it. "
        "The models are managed by ComfyUI (offloaded when other nodes need the memory) and reused across runs."
        "\n\n" + MODEL_FILES_HEADING + "\n" + "\n".join(layout_lines())
        + "\nWith 'download' on, the loader fetches missing official files itself."
    )

log = logging.getLogger(__name__)

DTYPES = ["auto", "fp16", "bf16", "fp32"]
VERSIONS = ["auto", "1.5", "1.6"]


def _resolve_files(unet: str, whisper: str, vae: str, allow_download: bool, check_only: bool = False) -> dict[str, str]:
    """Map the three dropdown values to files on disk, downloading official files when allowed.

    Raises ModelFilesMissing (one message for every missing file) or FileNotFoundError for user files.
    """
    from ..latentsync import hub, model_files

    found: dict[str, str] = {}
    specs = []
    for kind, folder, name in (("unet", paths.FOLDER, unet), ("whisper", paths.FOLDER, whisper), ("vae", "vae", vae)):
        path = paths.find_file(folder, name)
        if path is not None:
            found[kind] = path
            continue
        spec = paths.official_spec(kind, name)
        if spec is None:
            raise FileNotFoundError(
                f"{kind}: '{name}' is not in {', '.join(_folder_dirs(folder))}. Pick another file or put it there."
            )
        specs.append((kind, spec))
    if specs:
        root = paths.models_root()
        for kind, spec in list(specs):  # an official file under another accepted name (the VAE's hub name)
            alias = spec.find(root)
            if alias is not None:
                found[kind] = alias
                specs.remove((kind, spec))
    if specs:
        missing = [(spec, spec.dest(root)) for _, spec in specs]
        if check_only:
            blocker = hub.download_blocker(allow_download)
            if blocker:
                reason = "downloads are turned off (download = off)" if not allow_download else blocker
                raise model_files.ModelFilesMissing(missing, reason)
            return found
        got = model_files.ensure_files([s for _, s in specs], root, allow_download=allow_download)
        for kind, spec in specs:
            found[kind] = got[spec.key]
    return found


def _folder_dirs(folder: str) -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_folder_paths(folder))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, folder)]


def _compute_dtype(choice: str, device: Any) -> Any:
    import torch

    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if choice in table:
        return table[choice]
    import comfy.model_management as mm

    if mm.should_use_fp16(device):
        return torch.float16
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float32


def _load_vae(path: str) -> Any:
    import comfy.sd
    import comfy.utils

    state = comfy.utils.load_torch_file(path, safe_load=True)
    return comfy.sd.VAE(sd=state)


class LoadLatentSyncModel:
    """Loads LatentSync's U-Net and Whisper encoder plus the SD VAE; downloads official files when allowed."""

    CATEGORY = "LatentSync/loaders"
    SEARCH_ALIASES = ["lip sync model", "lipsync", "LatentSync model", "load checkpoint"]
    DESCRIPTION = _ReadOnFirstUse(_description)
    FUNCTION = "load"
    RETURN_TYPES = (MODEL, "VAE")
    RETURN_NAMES = ("model", "vae")
    OUTPUT_TOOLTIPS = (
        "The LatentSync model (U-Net, Whisper encoder, face resolution) for the other LatentSync nodes.",
        "The SD 1.x VAE (sd-vae-ft-mse) for Masked VAE Encode and VAE Decode Composite.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "unet": (paths.unet_choices(), {
                    "default": paths.default_unet(),
                    "tooltip": "U-Net checkpoint in models/latentsync. 1.5/ = LatentSync 1.5 (256 px faces, about 5 GB "
                               "VRAM at fp16), 1.6/ = LatentSync 1.6 (512 px, about 7 GB). Official names are downloaded "
                               "if missing.",
                }),
                "whisper": (paths.whisper_choices(), {
                    "tooltip": "Whisper audio encoder in models/latentsync/whisper (tiny.pt for both releases).",
                }),
                "vae": (paths.vae_choices(), {
                    "tooltip": "The SD VAE in models/vae: sd-vae-ft-mse (diffusers or ComfyUI format).",
                }),
                "version": (VERSIONS, {
                    "default": "auto",
                    "tooltip": "Which release the U-Net is. auto: from a <name>.json sidecar, else from the folder "
                               "or file name (1.5 -> 256 px, 1.6 -> 512 px).",
                }),
                "dtype": (DTYPES, {
                    "default": "auto",
                    "tooltip": "Compute precision of the U-Net. auto: fp16 where ComfyUI would use it (as upstream "
                               "on Ampere+ GPUs), else bf16/fp32. fp32 on CPU.",
                }),
                "download": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Download official files that are missing from Hugging Face (ByteDance/LatentSync-1.x, "
                               "stabilityai/sd-vae-ft-mse). Off: only use files already on disk.",
                }),
            }
        }

    # No VALIDATE_INPUTS: ComfyUI checks each dropdown against its list (official names and files on disk), one
    # message on that input. Whether a missing official file can be downloaded depends on two inputs (the file and
    # `download`), and ComfyUI repeats a VALIDATE_INPUTS message on every input the function takes, so that check
    # runs first thing in `load` (one message, on this node); the editor's missing-models dialog warns on opening.

    def load(self, unet, whisper, vae, version, dtype, download):
        import torch

        from ..latentsync.models.unet import load_unet
        from ..latentsync.models.whisper import load_whisper_encoder
        from ..latentsync.pipeline.loading import guess_version, unet_spec, whisper_fit_problem
        from . import comfy_compat as cc
        from .types import LatentSyncModel

        files = _resolve_files(unet, whisper, vae, allow_download=bool(download))
        spec = unet_spec(files["unet"], None if version == "auto" else version)
        device = cc.torch_device()
        compute = _compute_dtype(dtype, device)
        ops = cc.operations()
        import comfy.model_management as mm

        w_device = mm.text_encoder_device()
        w_dtype = torch.float16 if torch.device(w_device).type == "cuda" else torch.float32
        w_module = load_whisper_encoder(files["whisper"], dtype=w_dtype, operations=ops).eval()
        problem = whisper_fit_problem(w_module.dims.n_audio_state, spec.config, files["whisper"], files["unet"])
        if problem:  # before the (large) U-Net is read
            raise ValueError(problem)
        whisper_patcher = cc.make_patcher(w_module, load_device=w_device, offload=mm.text_encoder_offload_device())

        log.info("LatentSync: loading %s (%s, %d px, %s)", files["unet"], spec.config_name, spec.resolution, compute)
        unet_module = load_unet(files["unet"], spec.config, device="cpu", dtype=compute, operations=ops).eval()
        unet_patcher = cc.make_patcher(unet_module, load_device=device, offload=cc.offload_device())

        vae_obj = _load_vae(files["vae"])
        bundle = LatentSyncModel(
            unet=unet_patcher,
            whisper=whisper_patcher,
            config=spec.config,
            resolution=spec.resolution,
            version=None if version == "auto" and spec.config_name.endswith(".json") else (
                version if version != "auto" else guess_version(files["unet"])),
            dtype=compute,
            whisper_dtype=w_dtype,
            files={k: os.path.basename(v) for k, v in files.items()},
            models_dirs=paths.detector_dirs(),
            allow_download=bool(download),
        )
        log.info("LatentSync: %s", bundle.describe())
        return (bundle, vae_obj)


NODE_CLASS_MAPPINGS = {"LoadLatentSyncModel": LoadLatentSyncModel}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadLatentSyncModel": "Load LatentSync Model"}
