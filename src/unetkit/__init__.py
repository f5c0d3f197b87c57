"""unetkit: U-Net semantic segmentation from a folder of images and masks to masks on new images.

The public API: `UNet` (the network, preset "seed" by default), `train`, `predict`,
`evaluate` and `load_model`; the CLI (`unetkit ...`) wraps exactly these. `rle_encode`,
`rle_decode` and `read_rle_csv` read and write the run-length CSV that `predict --rle` writes.
"""

from unetkit.api import evaluate, load_model, predict, train
from unetkit.data.rle import read_rle_csv, rle_decode, rle_encode
from unetkit.models.unet import UNet

__all__ = ["UNet", "evaluate", "load_model", "predict", "read_rle_csv", "rle_decode", "rle_encode", "train"]
__version__ = "0.1.0"
