"""What a finished run says about itself when its model is clearly not usable.

A run can end with exit 0 and a model that never predicts foreground, a class it never learnt,
or a decision threshold pinned to the edge of the range it was chosen from. Each is a warning
with its likely cause and a command to try; `unetkit.train` logs them as the run's last lines,
and the model file's training record keeps them, so the run report shows the same words at its top.
"""

from __future__ import annotations

from typing import Any

from unetkit.config import TrainConfig
from unetkit.training.threshold import THRESHOLDS


def run_warnings(config: TrainConfig, history: list[dict[str, float]], val: dict[str, Any],
                 threshold: float | None, class_names: list[str] | None = None) -> list[str]:
    """The warnings a finished run deserves: each names what is wrong, the likely cause and what to try."""
    warnings: list[str] = []
    stronger = "--recipe best" if config.recipe == "seed" else "a longer --time-budget"
    if history and all(float(row.get("val_iou", 0.0)) == 0.0 for row in history):
        warnings.append(f"validation IoU was 0 in every one of the {len(history)} epoch(s): the model never predicted "
                        "the foreground it was shown. Likely causes: foreground too rare for the loss "
                        f"({config.loss.name}) or a run too short; try {stronger} (BCE + Dice), or "
                        "check that the masks mark the foreground (unetkit plan --data DIR)")
    names = class_names or []
    weighting = {"none": ("an unweighted loss", "--set loss.balance_classes=tempered, "),
                 "tempered": ("tempered class weights", "--set loss.balance_classes=inverse (the rare classes weighed "
                              "fully, at some cost to the common ones), ")}.get(config.loss.balance_classes,
                                                                            ("the class weights", ""))
    for index, value in enumerate(val.get("class_iou") or []):
        if float(value) == 0.0:
            name = names[index] if index < len(names) else f"class {index}"
            warnings.append(f"{name} (class {index}) has IoU 0 on validation: the model never predicts it. Likely "
                            f"cause: it covers too few pixels for {weighting[0]}; try {weighting[1]}or a longer "
                            "--time-budget")
    if threshold is not None and threshold in (THRESHOLDS[0], THRESHOLDS[-1]):
        side = "lowest" if threshold == THRESHOLDS[0] else "highest"
        warnings.append(f"the decision threshold {threshold:.2f} is the {side} the sweep tries: the probabilities are "
                        "miscalibrated (the weights were still moving, or the loss over- or under-counts the "
                        f"foreground); try a longer --time-budget, or {stronger}")
    return warnings
