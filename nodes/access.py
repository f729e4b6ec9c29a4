"""Which files a prompt may make the nodes read: ComfyUI's input, output and temp folders, and folders the server's
owner allows.

Anyone who can queue a prompt on a shared server could otherwise name any file the server can read (a dropdown
value such as ``../secret/x.wav`` or an absolute path skips ComfyUI's "value in list" check once a node declares it
in ``VALIDATE_INPUTS``), have it copied into ``output/``, or learn whether a file exists from the validation
message. So:

* a dropdown value is a file name inside the folder its annotation names (``[input]`` by default, ``[output]``,
  ``[temp]``), as ComfyUI itself checks: ``..`` and absolute names are refused;
* a free path (the ``path`` / ``video_path`` / ``audio_path`` fields) must resolve, symlinks followed, inside
  ComfyUI's input, output or temp folder or a folder listed in the environment variable ``LATENTSYNC_ALLOWED_DIRS``
  (separated by ``os.pathsep``: ``:`` on Linux/macOS, ``;`` on Windows), set by whoever starts the server;
* a refused path gets the same message whether or not the file exists, and nothing outside is looked at first
  beyond resolving the path.
"""

from __future__ import annotations

import os
from typing import Optional

ALLOWED_DIRS_ENV = "LATENTSYNC_ALLOWED_DIRS"


class AccessError(ValueError):
    """A file name or path the nodes may not read; the message names it and how to make it readable."""


def _comfy_dirs() -> list[str]:
    import folder_paths

    return [folder_paths.get_input_directory(), folder_paths.get_output_directory(),
            folder_paths.get_temp_directory()]


def allowed_roots() -> list[str]:
    """ComfyUI's input, output and temp folders and the owner's ``LATENTSYNC_ALLOWED_DIRS``, resolved."""
    extra = [d for d in os.environ.get(ALLOWED_DIRS_ENV, "").split(os.pathsep) if d.strip()]
    return [os.path.realpath(os.path.expanduser(d.strip())) for d in _comfy_dirs() + extra]


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([os.path.normcase(path), os.path.normcase(root)]) == os.path.normcase(root)
    except ValueError:  # different drives on Windows
        return False


def _refusal(text: str, what: str) -> AccessError:
    return AccessError(
        f"{what} path {text!r} is outside the folders LatentSync nodes may read (ComfyUI's input, output and temp "
        f"folders, and those in {ALLOWED_DIRS_ENV}). Put the file in ComfyUI's input folder, or ask the server's "
        f"owner to add its folder to {ALLOWED_DIRS_ENV}.")


def free_path(text: str, what: str) -> str:
    """The file a path field names, resolved, when it lies inside an allowed folder; else AccessError."""
    raw = text.strip().strip('"').strip("'")
    resolved = os.path.realpath(os.path.expanduser(raw))
    if not any(_inside(resolved, root) for root in allowed_roots()):
        raise _refusal(raw, what)
    return resolved


def choice_path(name: str, what: str) -> str:
    """The file a dropdown value names inside its annotated ComfyUI folder (input by default); else AccessError."""
    import folder_paths

    stripped, base = folder_paths.annotated_filepath(name or "")
    base = os.path.abspath(base or folder_paths.get_input_directory())
    full = os.path.abspath(os.path.join(base, stripped))
    if not stripped or os.path.isabs(stripped) or full == base or not _inside(full, base):
        raise AccessError(f"{what} {name!r} is not a file name in ComfyUI's input folder (no folders above it, no "
                          "absolute paths). Choose a file from the list, or upload one.")
    return full


def resolve(name: str, path: str, what: str) -> str:
    """The file to read: the path field when set (checked by :func:`free_path`), else the dropdown value."""
    if path and path.strip().strip('"').strip("'"):
        return free_path(path, what)
    return choice_path(name, what)


def problem(name: str, path: str, what: str) -> Optional[str]:
    """For VALIDATE_INPUTS: why the file cannot be read (refused, or missing inside the allowed folders), or None."""
    has_path = bool((path or "").strip().strip('"').strip("'"))
    if not name and not has_path:
        return f"No {what} chosen: upload one or give a path."
    try:
        full = resolve(name or "", path or "", what)
    except AccessError as exc:
        return str(exc)
    if not os.path.isfile(full):
        return f"{what} path not found: {path.strip()}" if has_path else \
            f"{what} file not found in the input folder: {name}"
    return None
