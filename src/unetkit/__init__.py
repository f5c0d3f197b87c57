"""unetkit: U-Net semantic segmentation from a folder of images and masks to masks on new images.

The public API: `UNet` (the network, preset "seed" by default), `train`, `predict`,
`evaluate` and `load_model`; the CLI (`unetkit ...`) wraps exactly these.
"""

from unetkit.api import evaluate, load_model, predict, train
from unetkit.models.unet import UNet

__all__ = ["UNet", "evaluate", "load_model", "predict", "train"]
__version__ = "0.1.0"
