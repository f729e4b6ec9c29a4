"""Public U-Net API: the model, its DeepCache state and the checkpoint loaders.

The model lives in ``unet_model.py`` (blocks in ``unet_blocks.py``, ``attention.py``, ``motion.py``) and the
loaders in ``unet_loader.py``; import them from here.
"""

from .unet_loader import config_name, load_unet, load_unet_state_dict, unet_state_dict_shapes
from .unet_model import DeepCacheState, UNet3DConditionModel

__all__ = [
    "DeepCacheState",
    "UNet3DConditionModel",
    "config_name",
    "load_unet",
    "load_unet_state_dict",
    "unet_state_dict_shapes",
]
