"""Large-image inference: unetkit's tiler against MONAI's sliding_window_inference, and peak memory
on a 20000 x 20000 image, in one run.

1. A seed U-Net is trained for a minute on the embedded synthetic set, so that its probabilities
   vary across the image as a real model's do; a 4096 x 4096 mosaic of held-out synthetic
   images is then predicted with the same weights and settings (tile 256, overlap 0.25, Gaussian
   blending with sigma = tile/8, 16 tiles per batch, same threads), four ways:
   - unetkit: `Predictor.tiled`, what `unetkit predict` runs on an image larger than its tile (fp32);
   - MONAI as its users run it: `sliding_window_inference(x, (256, 256), 16, model, overlap=0.25,
     mode="gaussian")` with the network built and loaded as a MONAI user would (`model.eval()`,
     default memory format, under `torch.no_grad()`), returning sigmoid probabilities so that
     both blend the same quantity;
   - MONAI given the channels-last module unetkit uses: the same call on the same network in
     unetkit's memory format, so that what remains between the two is the tiler itself;
   - unetkit with its opt-in bf16 on the CPU.
   The four run in turn, `--repeats` rounds, and each keeps its fastest round: the machine is
   shared, and the fastest round is the one least disturbed. Standardisation is included in all.
   Targets: unetkit >= 2x MONAI as its users run it and >= 1.15x MONAI on the channels-last
   module, fp32 probabilities equal to MONAI's within 1e-4.
2. A 20000 x 20000 8-bit tiled TIFF goes through `unetkit predict` in a child process (the CLI,
   as a user runs it); its peak RSS is read from getrusage. Targets: at most 5 minutes and 1 GB.

Needs MONAI (`make bench` installs monai==1.6.1 alongside the pinned torch). Lines:
  run: NAME seconds=X            (one per way, then)
  inference: unetkit_s=X monai_s=Y monai_channels_last_s=Z unetkit_bf16_s=B speedup=Y/X
             speedup_channels_last=Z/X max_abs_diff=W bf16_max_abs_diff=V   (one line)
  huge: side=20000 peak_rss_mb=X
"""

from __future__ import annotations

import argparse
import copy
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from unetkit.config import DataConfig, TrainConfig
from unetkit.data.synthetic import generate_synthetic, synthetic_example
from unetkit.export.model_file import SavedModel, load_model
from unetkit.inference.predictor import Predictor
from unetkit.models.unet import UNet

TILE, OVERLAP, BATCH = 256, 0.25, 16


def train_model(out_dir: Path, minutes: float) -> Path:
    from unetkit.api import train

    data = generate_synthetic(out_dir / "data", 300, seed=0)
    result = train(TrainConfig(out_dir=str(out_dir / "run"), epochs=100, time_budget_min=minutes, batch_size=8,
                               data=DataConfig(data_dir=str(data))))
    return result.model_path


def mosaic(side: int, seed: int = 7) -> np.ndarray:
    """(side, side, 1) uint8: held-out synthetic 101 x 101 examples laid side by side."""
    count = -(-side // 101)
    rows = [np.concatenate([synthetic_example(r * count + c, seed=seed)[0] for c in range(count)], axis=1)
            for r in range(count)]
    return np.concatenate(rows, axis=0)[:side, :side, None]


def time_unetkit(saved: SavedModel, image: np.ndarray, precision: str = "fp32") -> tuple[float, np.ndarray]:
    predictor = Predictor(saved, device="cpu", tile=TILE, overlap=OVERLAP, blend="gaussian", batch_size=BATCH,
                          precision=precision)
    started = time.perf_counter()
    prob = predictor.tiled(image)
    return time.perf_counter() - started, prob[0]


def time_monai(net: torch.nn.Module, saved: SavedModel, image: np.ndarray) -> tuple[float, np.ndarray]:
    from monai.inferers import sliding_window_inference

    started = time.perf_counter()
    with torch.no_grad():
        x = saved.preprocess.to_tensor(image[None])
        prob = sliding_window_inference(x, (TILE, TILE), BATCH, lambda t: torch.sigmoid(net(t)), overlap=OVERLAP,
                                        mode="gaussian", sigma_scale=0.125)
    return time.perf_counter() - started, prob[0, 0].numpy()


def profile_unetkit(model_path: Path, side: int) -> None:
    """Where one fp32 unetkit run spends its time, by PyTorch operator (self CPU time, the top 20)."""
    from torch.profiler import ProfilerActivity, profile

    saved = load_model(model_path)
    image = mosaic(side)
    time_unetkit(saved, image[:512, :512])  # warm-up: first-call allocations and kernel choices
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds, _ = time_unetkit(saved, image)
    print(f"profile: {side}x{side} in {seconds:.2f} s under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def compare(model_path: Path, side: int, repeats: int) -> dict[str, float]:
    """The four ways, in turn, `repeats` rounds: the fastest round of each, and how far apart they land."""
    saved = load_model(model_path)
    plain = UNet(saved.config)  # as a MONAI user builds it: default memory format
    plain.load_state_dict(load_model(model_path).net.state_dict())
    plain.eval()
    channels_last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    image = mosaic(side)
    ways = {"unetkit": lambda: time_unetkit(saved, image), "monai": lambda: time_monai(plain, saved, image),
            "monai_channels_last": lambda: time_monai(channels_last, saved, image),
            "unetkit_bf16": lambda: time_unetkit(saved, image, "bf16")}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    prob: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, run in ways.items():
            elapsed, prob[name] = run()
            seconds[name].append(elapsed)
    result = {f"{name}_s": min(times) for name, times in seconds.items()}
    return {**result, "max_abs_diff": float(np.abs(prob["unetkit"] - prob["monai"]).max()),
            "bf16_max_abs_diff": float(np.abs(prob["unetkit_bf16"] - prob["unetkit"]).max()),
            "mean_probability": float(prob["unetkit"].mean())}


def huge_peak_rss(model_path: Path, side: int, work: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of `unetkit predict` on a side x side tiled 8-bit TIFF."""
    block = mosaic(min(side, 4096), seed=11)[:, :, 0]
    reps = -(-side // block.shape[0])
    image = np.tile(block, (reps, reps))[:side, :side]
    source = work / "huge.tif"
    tifffile.imwrite(source, image, tile=(256, 256), compression="zlib")
    del image
    out = work / "huge-out"
    command = [sys.executable, "-m", "unetkit", "-q", "predict", "--model", str(model_path), "--input", str(source),
               "--out", str(out), "--device", "cpu", "--tile", str(TILE), "--batch-size", str(BATCH),
               "--stream-above", "0"]  # streamed by rows at any side, as a 20000 x 20000 image is by default
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with tifffile.TiffFile(out / "huge.tif") as tif:
        page = tif.pages[0]
        if page.shape != (side, side) or not page.is_tiled:
            raise SystemExit(f"huge: unexpected output {page.shape}, tiled={page.is_tiled}")
    return peak_kb / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096, help="side of the tiler comparison image")
    parser.add_argument("--huge-side", type=int, default=20000, help="side of the peak-memory image (0 = skip)")
    parser.add_argument("--train-minutes", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the four ways; each keeps its fastest")
    parser.add_argument("--profile", action="store_true", help="profile one unetkit run by operator, then stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="unetkit-bench-") as tmp:
        work = Path(tmp)
        model_path = train_model(work, args.train_minutes)
        if args.profile:
            profile_unetkit(model_path, args.side)
            return
        if args.huge_side:  # first: the child's RSS must not include anything of this process
            rss_mb, seconds = huge_peak_rss(model_path, args.huge_side, work)
            print(f"huge: {args.huge_side}x{args.huge_side} predicted in {seconds:.0f} s", flush=True)
        r = compare(model_path, args.side, args.repeats)
        print(f"tiler: {args.side}x{args.side}, mean probability {r['mean_probability']:.3f}, fastest of "
              f"{args.repeats} rounds", flush=True)
        for name in ("unetkit", "monai", "monai_channels_last", "unetkit_bf16"):
            print(f"run: {name} seconds={r[name + '_s']:.2f}")
        print(f"inference: unetkit_s={r['unetkit_s']:.2f} monai_s={r['monai_s']:.2f} "
              f"monai_channels_last_s={r['monai_channels_last_s']:.2f} unetkit_bf16_s={r['unetkit_bf16_s']:.2f} "
              f"speedup={r['monai_s'] / r['unetkit_s']:.2f} "
              f"speedup_channels_last={r['monai_channels_last_s'] / r['unetkit_s']:.2f} "
              f"max_abs_diff={r['max_abs_diff']:.2e} bf16_max_abs_diff={r['bf16_max_abs_diff']:.1e}")
        if args.huge_side:
            print(f"huge: side={args.huge_side} peak_rss_mb={rss_mb:.0f}")


if __name__ == "__main__":
    main()
