"""CPU training precision: the training step in bf16 autocast against fp32, in one run.

`runtime.amp: auto` trains in bf16 on CPUs with bf16 instructions (AVX512-BF16, AMX) and in fp32
elsewhere (runtime.has_bf16). This measures what that choice is worth on the machine at hand: the
same `train_step` (forward, loss in fp32, backward, AdamW step, channels-last) of the `fast` recipe's
network at 112^2 (TGS padded), batch 16, on in-memory tensors, each precision timed in alternating
rounds so drift in the machine's speed falls on both alike. On a CPU without bf16 instructions bf16
is emulated; the ratio then shows why `auto` keeps fp32 there.

Last line: cpu_precision: native_bf16=B fp32=X bf16=Y ratio=Z (images/s, ratio = bf16 / fp32)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from unetkit.data.loader import Batch
from unetkit.runtime import has_bf16
from unetkit.training.parts import Parts, build_parts
from unetkit.training.recipes import resolve_train_config
from unetkit.training.step import train_step


def step_parts(amp: str, model: dict[str, Any], batch_size: int) -> Parts:
    """The `fast` recipe's training parts on the CPU, in the given precision."""
    config = resolve_train_config({"recipe": "fast", "batch_size": batch_size, "model": model,
                                   "runtime": {"device": "cpu", "amp": amp}})
    return build_parts(config, steps_per_epoch=1, resume=None, class_weights=None, device=torch.device("cpu"),
                       monitor="val_loss")


def timed_steps(parts: Parts, batch: Batch, steps: int) -> float:
    """Seconds for `steps` training steps."""
    started = time.perf_counter()
    for _ in range(steps):
        train_step(parts, batch)
    return time.perf_counter() - started


def measure(model: dict[str, Any], batch_size: int = 16, size: int = 112, steps: int = 6,
            rounds: int = 3) -> dict[str, float]:
    """Images per second of the same training step in fp32 and in bf16 (forced, so the figure exists on
    every CPU)."""
    generator = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(batch_size, 1, size, size, generator=generator),
                  (torch.rand(batch_size, size, size, generator=generator) > 0.5).long(), None)
    both = {"fp32": step_parts("off", model, batch_size), "bf16": step_parts("bf16", model, batch_size)}
    seconds = dict.fromkeys(both, 0.0)
    for parts in both.values():
        parts.net.train()
        timed_steps(parts, batch, 2)  # warm-up: allocator, oneDNN kernels
    for _ in range(rounds):
        for name, parts in both.items():
            seconds[name] += timed_steps(parts, batch, steps)
    rates = {name: rounds * steps * batch_size / value for name, value in seconds.items()}
    return {**rates, "ratio": rates["bf16"] / rates["fp32"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--steps", type=int, default=6, help="steps per precision and round")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    native = has_bf16(torch.device("cpu"))
    results = {}
    for label, model in (("fast (start_neurons 16)", {}), ("fast, start_neurons 8", {"start_neurons": 8})):
        results[label] = measure(model, steps=args.steps)
        figures = results[label]
        print(f"{label}: fp32 {figures['fp32']:.1f} img/s, bf16 {figures['bf16']:.1f} img/s, "
              f"ratio {figures['ratio']:.2f}", flush=True)
    main_figures = results["fast (start_neurons 16)"]
    print(f"cpu_precision: native_bf16={native} fp32={main_figures['fp32']:.1f} bf16={main_figures['bf16']:.1f} "
          f"ratio={main_figures['ratio']:.2f}")


if __name__ == "__main__":
    main()
