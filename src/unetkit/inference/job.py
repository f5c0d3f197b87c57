"""A prediction job over a file or folder: which path each image takes, what is written, and
how a killed job is finished by running it again.

Images up to the model's tile are batched whole, larger ones tiled in memory, both with the same
outputs; TIFF and .npy inputs above `stream_pixels` are streamed band by band into tiled TIFF, so
memory follows the tile and the width. predict_args.json records the job (options, the model's
SHA-256) before the first image; a re-run of the same job skips images whose outputs all exist and
are newer than the image, so an interrupted folder is finished, not redone. Under torchrun each rank
predicts its share (balanced by pixels); rank 0 writes the record and the run-length CSV for all."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit import distributed
from unetkit.config import PredictConfig, to_dict
from unetkit.data.io import read_array, to_channels, write_png, write_tiff
from unetkit.data.pairing import find_images
from unetkit.data.regions import can_stream, image_size, open_rows
from unetkit.data.rle import rle_encode, write_rle_csv
from unetkit.data.tiled_writer import TiledTiffWriter
from unetkit.errors import UserError
from unetkit.fileio import check_output, file_sha256, make_dir, remove_stale_temporaries, write_text
from unetkit.inference.backends import open_predictor
from unetkit.inference.engine import AppliedModel, PredictionEngine
from unetkit.outputs import is_binary
from unetkit.runtime import log, progress
from unetkit.visualize import blend_overlay, class_colours, label_map

RECORD_NAME = "predict_args.json"
RECORD_FORMAT = "unetkit-predict"  # the tag that marks a predict_args.json as unetkit's
_RECORD_KEYS = ("model_path", "input_path", "out_dir", "status")  # what records written before the tag all hold


def is_prediction_record(record: Any) -> bool:
    """Whether `record` (predict_args.json, parsed) was written by a unetkit prediction job: the
    format tag and the model's SHA-256, or, from before the tag, the hash and the job's fields."""
    sha = record.get("model_sha256") if isinstance(record, dict) else None
    if not (isinstance(sha, str) and re.fullmatch("[0-9a-f]{64}", sha)):
        return False
    return record["format"] == RECORD_FORMAT if "format" in record else all(key in record for key in _RECORD_KEYS)


@dataclass
class PredictResult:
    """A finished prediction job."""

    out_dir: Path
    n_images: int
    seconds: float
    n_skipped: int = 0  # already complete from an interrupted run of the same job
    n_streamed: int = 0
    rle_path: Path | None = None


@dataclass
class _Item:
    """One input and the files it gets; `None` where an output was not asked for."""

    path: Path
    height: int
    width: int
    streamed: bool
    mask: Path
    probabilities: Path | None
    overlay: Path | None

    @property
    def outputs(self) -> list[Path]:
        return [out for out in (self.mask, self.probabilities, self.overlay) if out is not None]


class PredictionJob:
    """One `predict` run: plan, then whole/tiled images through `Predictor.run`, then streamed ones."""

    def __init__(self, config: PredictConfig) -> None:
        self.config = config
        self.predictor = open_predictor(config.model_path, config)
        self.saved: AppliedModel = self.predictor.saved
        self.out_dir = Path(config.out_dir)
        self.binary = is_binary(self.saved.config)
        self.earlier = self._earlier_record()  # read once, before this job writes its own
        self.items = [self._plan(path) for path in find_images(config.input_path, config.image_name, config.pairs)]
        self._check()
        self.palette = class_colours(self.saved.classes, self.saved.config.num_classes)

    def _plan(self, path: Path) -> _Item:
        height, width = image_size(path)
        streamed = can_stream(path) and height * width > self.config.stream_pixels
        mask_suffix = ".tif" if streamed or self.saved.config.multilabel else ".png"
        return _Item(path, height, width, streamed, mask=self.out_dir / f"{path.stem}{mask_suffix}",
                     probabilities=self.out_dir / f"{path.stem}_prob.tif" if self.config.probabilities else None,
                     overlay=self.out_dir / f"{path.stem}_overlay.png" if self.config.overlay and not streamed else None)

    def _check(self) -> None:
        """Every output path, before the first byte: never over an input (the model, an image), and
        over an existing file only where an earlier prediction job wrote it (or with --overwrite)."""
        inputs = {item.path.resolve() for item in self.items}
        in_job_folder = self.earlier is not None  # a folder an earlier job recorded holds that job's files
        for item in self.items:
            if any(out.resolve() in inputs for out in item.outputs):
                raise UserError(f"{item.path}: its mask would overwrite an input image; choose another --out")
            for out in item.outputs:
                check_output(out, [self.config.model_path], overwrite=self.config.overwrite,
                             ours=lambda _: in_job_folder)
            if item.streamed and not self.predictor.tiles_images:
                raise UserError(f"{item.path}: {item.height}x{item.width} is too large for this model, which resizes "
                                f"every image to {self.saved.preprocess.resize_to}x{self.saved.preprocess.resize_to} "
                                "(train with data.size_policy: pad to predict large images in tiles)")
            if item.streamed and self.config.rle:
                raise UserError(f"{item.path}: {item.height}x{item.width} is streamed, too large for --rle "
                                f"(raise --stream-above above {item.height * item.width / 1e6:.0f} megapixels)")
        if self.config.rle:
            same_csv = self.earlier is not None and self.earlier.get("rle") == self.config.rle
            check_output(self.config.rle, [self.config.model_path, *inputs], overwrite=self.config.overwrite,
                         ours=lambda _: same_csv, flag="--rle")

    def _earlier_record(self) -> dict[str, Any] | None:
        """What an earlier prediction job into this folder recorded, if one did. A predict_args.json unetkit
        did not write is the user's: never read as a job's record, never replaced."""
        path = self.out_dir / RECORD_NAME
        if not path.exists() and not path.is_symlink():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not is_prediction_record(record) or path.is_symlink() or not path.is_file():
            raise UserError(f"{path}: exists and is not a record of a unetkit prediction job; predict keeps its "
                            "record there and never replaces a file it did not write: choose another --out")
        return record

    def run(self) -> PredictResult:
        started = time.monotonic()
        distributed.join(self.predictor.device.type)
        created = not self.out_dir.exists()
        record = {"format": RECORD_FORMAT} | {k: v for k, v in to_dict(self.config).items() if k != "overwrite"} | {
            "model_sha256": file_sha256(Path(self.config.model_path)), "threshold_used": self.predictor.threshold}
        done = self._completed(record)
        distributed.barrier()  # every rank has read the earlier record before rank 0 replaces it
        make_dir(self.out_dir)
        if distributed.is_main():
            write_text(self.out_dir / RECORD_NAME, json.dumps(record | {"status": "running"}, indent=1))
        try:
            return self._predict(record, done, started)
        except BaseException:
            if self.earlier is None and distributed.is_main() and not any(
                    out.exists() for item in self.items for out in item.outputs):
                (self.out_dir / RECORD_NAME).unlink(missing_ok=True)  # nothing done: leave no trace of the job
                if created and not any(self.out_dir.iterdir()):
                    self.out_dir.rmdir()
            raise

    def _predict(self, record: dict[str, Any], done: set[Path], started: float) -> PredictResult:
        rle_rows: dict[Path, list[tuple[str, str]]] = {
            item.path: self._rle_rows(item.path.stem, self._read_back(item)) for item in self.items
            if item.path in done and self.config.rle and distributed.is_main()}
        todo = _share([item for item in self.items if item.path not in done])
        bar = progress(total=len(todo), desc="predict", unit="img")
        tiles = _TileProgress(self.predictor)
        try:
            for out in [out for item in todo for out in item.outputs]:  # what a killed run was writing when it died
                remove_stale_temporaries(out)
            # same sizes next to each other, so they share batches
            in_memory = sorted((item for item in todo if not item.streamed), key=lambda item: (item.height, item.width))
            for item, image, prob in self.predictor.run(self._read(in_memory, tiles), on_tiles=tiles.update):
                mask = self._write_whole(item, image, prob)
                if self.config.rle:
                    rle_rows[item.path] = self._rle_rows(item.path.stem, mask)
                bar.update()
            for item in [item for item in todo if item.streamed]:
                self._write_streamed(item, tiles)
                bar.update()
        finally:
            bar.close()
            tiles.close()
        for share in distributed.all_gather(rle_rows)[1:]:
            rle_rows.update(share)
        rle_path = Path(self.config.rle) if self.config.rle else None
        seconds = time.monotonic() - started
        n_new = len(self.items) - len(done)
        if distributed.is_main():
            if rle_path is not None:
                write_rle_csv(rle_path, [row for item in self.items for row in rle_rows[item.path]])
            write_text(self.out_dir / RECORD_NAME, json.dumps(record | {
                "status": "complete", "n_images": len(self.items), "n_skipped": len(done), "seconds": seconds},
                indent=1))
        log.info("%d masks written to %s (%.2f img/s)%s", n_new, self.out_dir, n_new / max(seconds, 1e-9),
                 f"; {len(done)} already complete from an earlier run" if done else "")
        return PredictResult(self.out_dir, len(self.items), seconds, len(done),
                             sum(item.streamed for item in self.items), rle_path)

    def _completed(self, record: dict[str, Any]) -> set[Path]:
        """Images finished by an earlier, interrupted run of this same job (same options and model)."""
        earlier = {"format": RECORD_FORMAT} | (self.earlier or {})  # one written before the tag: the same job all the same
        if self.earlier is None or {k: earlier.get(k) for k in record} != record:
            return set()
        return {item.path for item in self.items if _newer_than(item.outputs, item.path)}

    def _read(self, items: list[_Item], tiles: _TileProgress) -> Iterator[tuple[_Item, np.ndarray]]:
        channels = self.saved.config.in_channels
        for item in items:
            tiles.start(item)
            yield item, to_channels(read_array(item.path), channels, item.path)

    def _write_whole(self, item: _Item, image: np.ndarray, prob: np.ndarray) -> np.ndarray:
        """Mask (+ probabilities, overlay) of an image predicted in memory; returns the mask."""
        mask = self.predictor.to_mask(prob)
        if self.saved.config.multilabel:  # (K, H, W): one 0/255 page per label
            write_tiff(item.mask, mask * 255)
        else:
            write_png(item.mask, mask * 255 if self.binary else mask, palette=None if self.binary else self.palette)
        if item.probabilities:
            write_tiff(item.probabilities, prob)
        if item.overlay:
            write_png(item.overlay, blend_overlay(image, label_map(mask)))
        return mask

    def _write_streamed(self, item: _Item, tiles: _TileProgress) -> None:
        """Rows in, rows out: tiled TIFF mask (and probabilities), never the whole image in memory."""
        model = self.saved.config
        k = model.num_classes
        tiles.start(item)
        if self.saved.postprocess and self.binary:
            log.info("%s: streamed by rows; the whole-image rules %s are not applied", item.path,
                     ", ".join(f"{name} {value} px" for name, value in self.saved.postprocess.items()))
        if self.config.overlay:
            log.info("%s: streamed by rows; no overlay is written for it", item.path)
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(open_rows(item.path, model.in_channels))
            mask_out = stack.enter_context(TiledTiffWriter(item.mask, item.height, item.width, np.uint8,
                                                           k if model.multilabel else 1, convert=self._mask_rows))
            prob_out = stack.enter_context(TiledTiffWriter(item.probabilities, item.height, item.width, np.float32, k)) \
                if item.probabilities else None
            for _, prob in self.predictor.stream(reader, item.height, item.width, on_tiles=tiles.update):
                rows = np.moveaxis(prob, 0, -1)  # (rows, W, K), a view: the writers take bands rows first
                mask_out.write(rows)  # the mask decided in the writer's thread, beside the network's next tiles
                if prob_out is not None:
                    prob_out.write(rows)

    def _mask_rows(self, rows: np.ndarray) -> np.ndarray:
        """(rows, W, K) probabilities of a streamed band -> its mask rows as the TIFF stores them:
        (rows, W) 0/255 (binary) or class indices, multi-label (rows, W, K) 0/255."""
        mask = self.predictor.to_mask(np.moveaxis(rows, -1, 0), postprocess=False)
        return np.moveaxis(mask, 0, -1) * 255 if self.saved.config.multilabel else mask * 255 if self.binary else mask

    def _read_back(self, item: _Item) -> np.ndarray:
        """The mask an earlier run wrote, for the run-length CSV."""
        raw = read_array(item.mask, palette_indices=True)
        if self.saved.config.multilabel:
            return (raw > 0).astype(np.uint8).transpose(2, 0, 1)
        return (raw[:, :, 0] > 0).astype(np.uint8) if self.binary else raw[:, :, 0]

    def _rle_rows(self, stem: str, mask: np.ndarray) -> list[tuple[str, str]]:
        """Binary: one row per image; classes and labels: one row <stem>_<name> per foreground class."""
        if self.binary:
            return [(stem, rle_encode(mask))]
        names = [c["name"] for c in self.saved.classes] or [str(i) for i in range(self.saved.config.num_classes)]
        if self.saved.config.multilabel:
            return [(f"{stem}_{names[i]}", rle_encode(mask[i])) for i in range(len(mask))]
        return [(f"{stem}_{names[i]}", rle_encode(mask == i)) for i in range(1, self.saved.config.num_classes)]


def _share(items: list[_Item]) -> list[_Item]:
    """This torchrun rank's images: largest first to the least-loaded rank (the same plan on every rank)."""
    loads = [0] * distributed.world_size()
    mine = set()
    for item in sorted(items, key=lambda item: (-item.height * item.width, str(item.path))):
        rank = loads.index(min(loads))
        loads[rank] += item.height * item.width
        if rank == distributed.rank():
            mine.add(item.path)
    return [item for item in items if item.path in mine]


def _newer_than(outputs: list[Path], source: Path) -> bool:
    """All outputs exist and were written after the input last changed (make's rule)."""
    try:
        since = source.stat().st_mtime
        return all(out.stat().st_mtime >= since for out in outputs)
    except OSError:
        return False


class _TileProgress:
    """A second bar, over tiles, for images cut into many of them."""

    def __init__(self, predictor: PredictionEngine) -> None:
        self.predictor = predictor
        self.bar: Any = None

    def start(self, item: _Item) -> None:
        self.close()
        count = self.predictor.tile_count(item.height, item.width)
        self.bar = progress(total=count, desc=item.path.name, unit="tile", leave=False) if count > 1 else None

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:  # tqdm's close is idempotent: a closed bar neither updates nor closes again
        if self.bar is not None:
            self.bar.close()
