"""Network definitions: blocks, the U-Net assembly and its named presets."""

from unetkit.models.registry import PRESETS, create_model, preset_config
from unetkit.models.unet import UNet, count_parameters

__all__ = ["PRESETS", "UNet", "count_parameters", "create_model", "preset_config"]
