"""Network definitions: the SegmentationNet base, architectures, their registry and named presets."""

from unetkit.models.base import SegmentationNet, count_parameters
from unetkit.models.registry import ARCHITECTURES, PRESETS, build_model, create_model, preset_config
from unetkit.models.unet import UNet

__all__ = ["ARCHITECTURES", "PRESETS", "SegmentationNet", "UNet", "build_model", "count_parameters", "create_model",
           "preset_config"]
