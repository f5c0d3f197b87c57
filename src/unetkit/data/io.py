"""Reading images and masks from disk, and writing masks back, with one-line errors.

Pillow reads PNG/JPEG/GIF (OpenCV the plainest PNGs, see `_decode_plain_png`); tifffile reads TIFF, which Pillow
handles poorly beyond 8-bit (float32, multi-channel stacks); NumPy reads .npy ((H, W) or (H, W, C), never pickles).
What is ours is the policy: arrays come back as (H, W, C) in the file's own dtype, float arrays hold only finite values
(NaN or infinity would train NaN weights or predict empty masks without a word), every failure names the file, and
nothing that is not a regular file is opened (a FIFO named like an image would block the reader forever).

- A channels-first .npy (C, H, W), as PyTorch and many scientific tools save it, is read as (H, W, C).
- EXIF orientation is applied to every file Pillow reads, images and masks alike, so both come upright as a viewer
  shows them, and masks are predicted so.
- A PNG or GIF's transparency (alpha) is no picture: when the model expects fewer channels than stored, a varying
  alpha is dropped (said once per folder), as OpenCV's and Pillow's conversions do; `--in-channels 2` or 4 keeps it.
  TIFF and .npy channels are data: a 2nd or 4th channel there is never dropped unless uniform.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps

from unetkit.errors import UserError
from unetkit.fileio import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy", ".gif")
TIFF_EXTENSIONS = (".tif", ".tiff")
_EQUAL_CHANNEL_TOLERANCE = 0.02  # JPEG turns a gray image saved as RGB into channels a few levels apart
ALPHA_EXTENSIONS = (".png", ".gif")  # formats whose 2nd / 4th channel is transparency, not data
MAX_CHANNELS_FIRST = 4  # (C, H, W) arrays are recognised for C up to this
ROTATING = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_MODE_DTYPES = {"I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int64, "1": np.uint8}  # Pillow's
log = logging.getLogger("unetkit")
_told: set[tuple[str, Path]] = set()  # (what, folder) already said once


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def read_array(path: str | os.PathLike[str], *, palette_indices: bool = False,
               hashes: dict[Path, str] | None = None) -> np.ndarray:
    """Decode an image file to (H, W, C) in its stored dtype (uint8, uint16, float32, ...). Palette PNGs come back as
    their colours, or as their indices with `palette_indices` (masks store class indices that way). A GIF whose palette
    is gray comes back as its gray levels either way, so a Carvana mask reads 0/255 whichever order its palette lists
    black and white in. `hashes`: the file's SHA-256 (what --resume compares) is recorded there, from the bytes read."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise UserError(f"{file}: unknown image extension '{file.suffix}' (readable: {', '.join(IMAGE_EXTENSIONS)})")
    check_regular_file(file)
    try:
        data = file.read_bytes() if hashes is not None or suffix == ".png" else None
        if data is not None and hashes is not None:  # the bytes hashed are the bytes decoded
            hashes[file] = hashlib.sha256(data).hexdigest()
        source = file if data is None else io.BytesIO(data)
        if suffix in TIFF_EXTENSIONS:
            array = _read_tiff(source)
        elif suffix == ".npy":
            array = _check_npy(np.load(source, allow_pickle=False), file)
        elif data is None or (array := _decode_plain_png(data)) is None:
            array = _read_pillow(file, palette_indices, source)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure on a user's file is that file's problem
        raise UserError(f"{file}: cannot read image ({first_line(exc)})") from None
    array = array[:, :, None] if array.ndim == 2 else array
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise UserError(f"{file}: expected a 2-D image, got an array of shape {array.shape}")
    check_finite(array, file)
    return array


def _check_npy(array: np.ndarray, file: Path) -> np.ndarray:
    """A .npy array as an image (H, W[, C]), channels-first moved last; refuses what is no image."""
    if array.dtype.names is not None:
        raise UserError(f"{file}: array of structured dtype {array.dtype}; expected plain numbers (H, W) or (H, W, C) "
                        "(stack its fields: numpy.stack([a[name] for name in a.dtype.names], axis=-1))")
    if np.iscomplexobj(array):
        raise UserError(f"{file}: array of complex dtype {array.dtype}; expected real numbers (save numpy.abs(a) for "
                        "the magnitude, or a.real)")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise UserError(f"{file}: array of dtype {array.dtype}; expected numbers (H, W) or (H, W, C)")
    if array.ndim == 3 and array.shape[2] == 0:
        raise UserError(f"{file}: array of shape {array.shape} has no channels; expected (H, W) or (H, W, C) with C >= 1")
    if channels_first(array.shape):
        say_once("channels-first", file.parent, "%s: (C, H, W) array %s read as channels-first (H, W, C); so is every "
                 ".npy of this kind in %s", file, array.shape, file.parent)
        array = np.moveaxis(array, 0, -1)
    return array.astype(np.uint8) if array.dtype == np.bool_ else array


def channels_first(shape: tuple[int, ...]) -> bool:
    """The rule for .npy arrays: 3-D, first axis 1..MAX_CHANNELS_FIRST, last axis longer than that."""
    return len(shape) == 3 and 1 <= shape[0] <= MAX_CHANNELS_FIRST < shape[2]


def say_once(what: str, folder: Path, message: str, *args: object) -> None:
    """An info line once per (what, folder), not once per file of a large folder."""
    if (what, folder) not in _told:
        _told.add((what, folder))
        log.info(message, *args)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) as read_array returns the image (EXIF orientation applied), from the header alone."""
    swap = image.getexif().get(0x0112, 1) in ROTATING
    return (image.width, image.height) if swap else (image.height, image.width)


def check_regular_file(path: Path) -> None:
    """Refuse, without opening it, what cannot be an image file: missing, a symbolic link loop or a
    broken link, a folder, a FIFO, socket or device (opening a FIFO blocks until a writer comes)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path}: symbolic link loop (the link never reaches a file)") from None
        if path.is_symlink():
            raise UserError(f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise UserError(f"{path}: file not found") from None
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise UserError(f"{path}: is {kind}, not an image file; unetkit reads regular files only")


def check_image_file(path: Path, where: str = "", *, regular: bool = False) -> None:
    """`check_regular_file` (unless the caller knows the file is `regular`: a scandir entry), then an extension
    unetkit reads; `where` ends the message (" (listed in X)")."""
    if not regular:
        check_regular_file(path)
    if not is_image_file(path):
        raise UserError(f"{path}: unknown image extension '{path.suffix}'{where}")


def check_finite(array: np.ndarray, path: str | os.PathLike[str], where: str = "") -> None:
    """Refuse float pixels that are NaN or infinite, counting them (a pixel counts once, whatever its channels)."""
    if not np.issubdtype(array.dtype, np.inexact):
        return
    bad = ~np.isfinite(array)
    bad = bad.any(axis=2) if bad.ndim == 3 else bad
    if count := int(np.count_nonzero(bad)):
        raise UserError(f"{path}: {count} of {bad.size} pixels{where} are NaN or infinite; unetkit needs finite values "
                        "(replace them, e.g. with numpy.nan_to_num, and save the file again)")


@contextlib.contextmanager
def open_pillow(file: Path, source: Path | io.BytesIO | None = None) -> Iterator[Image.Image]:
    """Image.open with Pillow's decompression-bomb guard as one line, not a warning plus an error.
    `source`: the file's bytes when already read (errors still name `file`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(file if source is None else source)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise UserError(f"{file}: refused by Pillow's decompression-bomb guard ({first_line(exc).rstrip('.')}); "
                            "store an image this large as TIFF, which unetkit reads without that limit") from None
        with image:
            yield image


def _read_pillow(file: Path, palette_indices: bool, source: Path | io.BytesIO) -> np.ndarray:
    with open_pillow(file, source) as image:
        # Pillow decodes 16-bit RGB/RGBA/LA PNGs to 8 bits; the raw mode it would decode them from tells
        if image.format == "PNG" and image.tile and image.tile[0][3] in ("RGB;16B", "RGBA;16B", "LA;16B"):
            raise UserError(f"{file}: 16-bit colour PNG is not supported (Pillow would drop to 8 bits); "
                            "save it as 16-bit TIFF")
        image.load()  # decodes now, so truncated files fail here
        gif = image.format == "GIF"
        if image.getexif().get(0x0112, 1) not in (0, 1):  # an EXIF orientation: turned (a new image)
            image = ImageOps.exif_transpose(image)
        if image.mode == "P" and gif and _gray_palette(image):
            return np.asarray(image.convert("L"))
        if image.mode == "P":
            return np.asarray(image if palette_indices else image.convert("RGBA" if "transparency" in image.info else "RGB"))
        if image.mode in _MODE_DTYPES:
            return np.asarray(image).astype(_MODE_DTYPES[image.mode])
        if image.mode not in ("L", "RGB", "RGBA", "LA", "F"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        return np.asarray(image)


_PLAIN_PNG = {(8, 0), (8, 2), (16, 0)}  # (bit depth, colour type): 8-bit gray and RGB, 16-bit gray
_PLAIN_CHUNKS = {b"IHDR", b"IDAT", b"IEND", b"pHYs", b"tIME"}  # none of them changes the pixels Pillow returns


def _decode_plain_png(data: bytes) -> np.ndarray | None:
    """A gray or RGB PNG holding nothing that Pillow interprets (palette, transparency, EXIF, colour profiles),
    decoded by OpenCV; None for any other file. OpenCV decodes without holding the GIL, so a folder's reader threads
    decode in parallel, where Pillow's PNG decoding runs one file at a time. The pixels are Pillow's. Every chunk's
    CRC is checked first: a damaged file goes to Pillow, whose error names it, and libpng prints nothing."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or (data[24], data[25]) not in _PLAIN_PNG:
        return None
    width, height = struct.unpack(">II", data[16:24])
    if width * height > (Image.MAX_IMAGE_PIXELS or 0):  # Pillow's decompression-bomb guard says why
        return None
    view, offset = memoryview(data), 8
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", view[offset:offset + 8])
        end = offset + 12 + length
        if kind not in _PLAIN_CHUNKS or end > len(data) or zlib.crc32(view[offset + 4:end - 4]) != int.from_bytes(
                view[end - 4:end], "big"):
            return None
        if kind == b"IEND":
            import cv2

            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            return None if array is None else cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if array.ndim == 3 else array
        offset = end
    return None  # truncated before IEND


def _gray_palette(image: Image.Image) -> bool:
    """True when every palette entry that `image` ("P" mode) uses is a gray (r == g == b)."""
    palette = np.asarray(image.getpalette() or [], np.int64)
    colours = palette[: len(palette) // 3 * 3].reshape(-1, 3)
    used = np.unique(np.asarray(image))
    if len(used) == 0 or used.max() >= len(colours):
        return False
    return bool((colours[used] == colours[used][:, :1]).all())


def _read_tiff(file: Path | io.BytesIO) -> np.ndarray:
    """TIFF as (H, W, C): interleaved samples stay last; planar samples and page stacks become channels."""
    with tifffile.TiffFile(file) as tif:
        axes, array = tif.series[0].axes, tif.series[0].asarray()
    if array.ndim == 3 and axes[-1] not in "SC" and axes[-2:] == "YX":  # (C/S/Q/Z/I, Y, X): channels first
        array = np.moveaxis(array, 0, -1)
    return np.ascontiguousarray(array)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_channels(array: np.ndarray, channels: int, path: str | os.PathLike[str]) -> np.ndarray:
    """(H, W, C) to `channels` channels, refusing what loses information: gray repeats, RGB with equal channels
    (the TGS PNGs) keeps one, a uniform alpha is dropped; colour for a gray model is an error, not a conversion."""
    have = array.shape[2]
    if have in (2, 4) and channels != have:  # LA / RGBA
        alpha = array[:, :, -1]
        if alpha.min() != alpha.max() and Path(path).suffix.lower() in ALPHA_EXTENSIONS:
            say_once("alpha", Path(path).parent, "%s: transparency (alpha) dropped: the model expects %d channel(s); "
                     "so is every varying alpha in %s (--in-channels %d keeps it)", path, channels, Path(path).parent, have)
        elif alpha.min() != alpha.max():
            raise UserError(f"{path}: image has a transparency channel that is not uniform; the model expects "
                            f"{channels} channel(s)")
        array, have = array[:, :, :-1], have - 1
    if have == channels:
        return array
    if have == 1:
        return np.repeat(array, channels, axis=2)
    if channels == 1 and channels_equal(array):
        return array[:, :, :1]
    hint = " (train with --in-channels 3 for colour images)" if channels == 1 else ""
    raise UserError(f"{path}: image has {have} distinct channels but the model expects {channels}{hint}")


def drop_uniform_alpha(array: np.ndarray) -> np.ndarray:
    """(H, W, C) without its alpha channel (LA, RGBA) when that is uniform: it then says nothing."""
    uniform = array.shape[2] in (2, 4) and array[:, :, -1].min() == array[:, :, -1].max()
    return array[:, :, :-1] if uniform else array


def picture_channels(array: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """(H, W, C) without the channels that are no picture: a uniform alpha, and a PNG or GIF's alpha at all."""
    if array.shape[2] in (2, 4) and Path(path).suffix.lower() in ALPHA_EXTENSIONS:
        return array[:, :, :-1]
    return drop_uniform_alpha(array)


def channels_equal(array: np.ndarray) -> bool:
    """True when all channels of (H, W, C) carry the same picture (up to JPEG noise)."""
    if all((array[:, :, c] == array[:, :, 0]).all() for c in range(1, array.shape[2])):  # exact copies: no float copy
        return True  # (channel by channel: a broadcast over the last axis runs a 3-element inner loop per pixel)
    first = array[:, :, :1].astype(np.float32)
    spread = float(np.abs(array.astype(np.float32) - first).max())
    return spread <= _EQUAL_CHANNEL_TOLERANCE * dtype_range(array.dtype)


def dtype_range(dtype: np.dtype) -> float:
    """The value that means "full intensity" for images of `dtype` (255, 65535, or 1.0 for floats)."""
    return float(min(np.iinfo(dtype).max, 65535)) if np.issubdtype(dtype, np.integer) else 1.0


def write_png(path: str | os.PathLike[str], array: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a (H, W) or (H, W, 3) uint8 array as PNG, atomically; with `palette` ((n, 3) uint8), class indices
    become a palette PNG: viewers show the colours, readers asking for indices get the classes back."""
    image = Image.fromarray(np.ascontiguousarray(array))
    if palette is not None:
        image = image.convert("P") if image.mode != "P" else image
        image.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_tiff(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array (e.g. float32 probabilities, (C, H, W)) as a compressed TIFF, atomically."""
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression="zlib")
