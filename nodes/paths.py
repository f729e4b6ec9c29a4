"""Model folders: ``models/latentsync`` registered with ComfyUI, dropdown choices, and name -> file resolution.

The folder is merged into ``folder_paths`` (paths a user added in extra_model_paths.yaml are kept). Dropdowns
always offer the official file names, so a fresh install can pick them and let the loader download them.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional

FOLDER = "latentsync"  # = latentsync.model_files.COMFY_FOLDER (a test checks; read here without importing it)
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".sft")


@functools.lru_cache(maxsize=1)
def official_names() -> dict[str, Any]:
    """The official layout, from latentsync/model_files.py (the one table of model files): dropdown names of the
    U-Nets (-> release), Whisper, the VAE, and the auxiliary folder. Read on first use: importing stays light."""
    from ..latentsync import model_files
    from ..latentsync.metrics.files import SYNCNET_V2

    return {
        "unets": {model_files.name_in_folder(spec, FOLDER): version for version, spec in model_files.UNET_FILES.items()},
        "whisper": model_files.name_in_folder(model_files.WHISPER_TINY, FOLDER),
        "vae": model_files.name_in_folder(model_files.VAE_FT_MSE, "vae"),
        "auxiliary": model_files.name_in_folder(SYNCNET_V2, FOLDER).split("/")[0],
    }


def default_unet() -> str:
    """The loader's default U-Net: the default release's official file."""
    from ..latentsync.configs import DEFAULT_VERSION

    return next(name for name, version in official_names()["unets"].items() if version == DEFAULT_VERSION)


def register_model_folder() -> None:
    """Add ``<models>/latentsync`` to ComfyUI's model folders, keeping user-configured paths and extensions."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    try:
        folder_paths.add_model_folder_path(FOLDER, default, is_default=True)
    except TypeError:  # ComfyUI before mid 2024: no is_default (appends)
        if default not in folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))[0]:
            folder_paths.add_model_folder_path(FOLDER, default)
    paths, exts = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(exts) | set(MODEL_SUFFIXES))


def _norm(name: str) -> str:
    return name.replace("\\", "/")


def _listing(folder: str) -> list[str]:
    import folder_paths

    try:
        return [_norm(n) for n in folder_paths.get_filename_list(folder)]
    except KeyError:
        return []


def _is_whisper(name: str) -> bool:
    return name.lower().startswith("whisper/")


def _is_auxiliary(name: str) -> bool:
    return name.lower().startswith(official_names()["auxiliary"] + "/")


def unet_choices() -> list[str]:
    """U-Net checkpoints in models/latentsync (not whisper/ or auxiliary/), official names first."""
    found = [n for n in _listing(FOLDER) if not _is_whisper(n) and not _is_auxiliary(n)]
    unets = official_names()["unets"]
    return list(unets) + sorted(n for n in found if n not in unets)


def whisper_choices() -> list[str]:
    found = [n for n in _listing(FOLDER) if _is_whisper(n)]
    whisper = official_names()["whisper"]
    return [whisper] + sorted(n for n in found if n != whisper)


def vae_choices() -> list[str]:
    found = _listing("vae")
    vae = official_names()["vae"]
    return [vae] + sorted(n for n in found if n != vae)


def find_file(folder: str, name: str) -> Optional[str]:
    """Absolute path of a dropdown value, or None when it is not on disk (yet)."""
    import folder_paths

    for candidate in (name, name.replace("/", os.sep)):
        try:
            path = folder_paths.get_full_path(folder, candidate)
        except KeyError:
            path = None
        if path and os.path.isfile(path):
            return path
    return None


def models_root() -> str:
    import folder_paths

    return folder_paths.models_dir


def detector_dirs() -> list[str]:
    """Folders searched for face detector files: the models root, then every models/latentsync and
    models/insightface folder ComfyUI knows (extra_model_paths.yaml included)."""
    import folder_paths

    dirs = [folder_paths.models_dir]
    for name in (FOLDER, "insightface"):
        try:
            dirs += [d for d in folder_paths.get_folder_paths(name) if d not in dirs]
        except KeyError:
            pass
    return dirs


def official_spec(kind: str, name: str) -> Any:
    """The downloadable ModelFile behind an official dropdown value, or None for user files."""
    from ..latentsync import model_files

    name = _norm(name)
    official = official_names()
    if kind == "unet" and name in official["unets"]:
        return model_files.UNET_FILES[official["unets"][name]]
    if kind == "whisper" and name == official["whisper"]:
        return model_files.WHISPER_TINY
    if kind == "vae" and name == official["vae"]:
        return model_files.VAE_FT_MSE
    return None


class InputChoices(list):
    """An upload dropdown's files, listed as core lists them, whose membership is "a file these nodes may read".

    ComfyUI checks a dropdown value with ``value in choices`` unless the node's ``VALIDATE_INPUTS`` takes the input,
    and it reports a failed ``VALIDATE_INPUTS`` once per input that function takes. So the file nodes leave their
    dropdowns to this check (one message, on the dropdown) and validate only their path field themselves (one
    message, on the path). Members beyond the listed names: a name in a subfolder of the input folder or annotated
    ``[output]`` / ``[temp]`` that names an existing file there (``..`` and absolute names never), and the empty value
    (nothing chosen: the path field may name the file; otherwise the node says so when it runs).
    """

    what = "file"

    def __contains__(self, name: object) -> bool:
        if list.__contains__(self, name) or name == "":
            return True
        if not isinstance(name, str):
            return False
        from . import access

        try:
            return os.path.isfile(access.choice_path(name, self.what))
        except access.AccessError:
            return False


def input_files(kinds: tuple[str, ...], what: str = "file") -> InputChoices:
    """Files in ComfyUI's input folder whose extension is one of ``kinds`` (for upload dropdowns)."""
    import folder_paths

    choices = InputChoices()
    choices.what = what
    folder = folder_paths.get_input_directory()
    try:
        names = os.listdir(folder)
    except OSError:
        return choices
    choices.extend(sorted(n for n in names if os.path.isfile(os.path.join(folder, n)) and n.lower().endswith(kinds)))
    return choices


def resolve_input(name: str, path: str = "", what: str = "file") -> str:
    """A file chosen in an upload dropdown, or the explicit ``path`` when one is given (it wins); both must lie
    where the nodes may read (see ``access``), else AccessError."""
    from . import access

    return access.resolve(name, path, what)
