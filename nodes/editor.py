"""What a node shows in the editor besides its outputs: a one-line badge under it (drawn by web/latentsync.js, kept
in the node's properties so a reload keeps it) and, for warnings, the text in the node itself (ComfyUI's own
``progress_text`` message, as core nodes send it; ComfyUI versions without it just skip it)."""

from __future__ import annotations

import logging
from typing import Any, Optional

log = logging.getLogger(__name__)

HIDDEN = {"unique_id": "UNIQUE_ID"}  # add to a node's INPUT_TYPES()["hidden"] to learn its id


def with_badge(result: tuple, text: str, warn: bool = False, node_id: Optional[Any] = None) -> dict:
    """A node's return value: its outputs plus the badge; a warning is also logged and written in the node."""
    if warn:
        log.warning("LatentSync: %s", text)
        show_text(node_id, text)
    return {"ui": {"latentsync_badge": [{"text": text, "warn": bool(warn)}]}, "result": result}


def show_text(node_id: Optional[Any], text: str) -> None:
    if node_id is None:
        return
    try:
        from server import PromptServer
    except ImportError:  # not inside ComfyUI
        return
    send = getattr(getattr(PromptServer, "instance", None), "send_progress_text", None)
    if send is not None:
        send(text, str(node_id))
