"""The quality preset input of the sampling nodes: draft / standard / close-up (see ``latentsync.presets``).

In a node every widget always has a value, so "given explicitly" means "changed from the widget's default": such
a widget wins over the preset, the others take the preset's value. The preset's release (face resolution) is the
loader's business; a mismatch is only reported.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def apply(quality: str, steps: Any, guidance: Any, deepcache: Any, resolution: int) -> tuple[Any, Any, Any]:
    """(steps, guidance, deepcache) after the preset; widgets changed from their defaults are kept."""
    from ..latentsync.configs import RESOLUTION_BY_VERSION
    from ..latentsync.options import OPTIONS, node_default, node_input
    from ..latentsync.presets import PRESETS, resolve

    if not quality or node_default("quality", quality) is None:  # "custom": no preset
        return steps, guidance, deepcache
    if quality not in PRESETS:
        raise ValueError(f"quality must be one of {', '.join(node_input('quality')[0])}, got {quality!r}.")
    given = {"steps": steps, "guidance": guidance, "deepcache": deepcache}
    explicit = {k: v for k, v in given.items() if v != OPTIONS[k].default}  # widgets changed from their default
    values = resolve(quality, explicit, {**given, "version": None})
    wanted = RESOLUTION_BY_VERSION[PRESETS[quality].version]
    if wanted != resolution:
        log.warning("LatentSync: the %s preset is meant for %d px faces (LatentSync %s); the loaded model works at %d "
                    "px.", quality, wanted, PRESETS[quality].version, resolution)
    return values["steps"], values["guidance"], values["deepcache"]
