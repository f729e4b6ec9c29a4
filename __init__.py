"""LatentSync lip-sync for ComfyUI: discrete nodes over a re-implementation of ByteDance's LatentSync 1.5/1.6.

Loading the pack registers ``models/latentsync`` with ComfyUI's model folders and the node classes; it
imports no model code, downloads nothing and changes no other global state.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

try:
    from .nodes.paths import register_model_folder

    register_model_folder()
except ImportError:  # imported outside ComfyUI (e.g. by tests): no folder_paths
    pass

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
