"""The page's "train on corrections": `train --data LABELS --init MODEL --time-budget M --out
LABELS/runs/finetune-<time>`, resolved by the same code as the command, in a background thread, then
the images predicted and ranked again with the new model. A thread keeps the model, the cache and the
page in one process; PyTorch releases the interpreter during its kernels, so the page stays usable
while it trains. One fine-tune runs at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from unetkit.errors import UserError
from unetkit.review.session import ReviewSession
from unetkit.runtime import log

MIN_MASKS = 4  # fewer cannot be split into training and validation images


class FinetuneJob:
    """State of the background fine-tune, read by GET /api/train."""

    def __init__(self, session: ReviewSession) -> None:
        self.session = session
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"status": "idle", "message": "", "progress": 0.0}
        self.thread: threading.Thread | None = None
        self.started = 0.0

    def status(self) -> dict[str, Any]:
        with self.lock:
            state = dict(self.state)
        if state["status"] == "training":  # 90% by the time budget, the rest for ranking again
            seconds = self.session.config.finetune_minutes * 60
            state["progress"] = round(min((time.monotonic() - self.started) / seconds, 0.99) * 0.9, 3)
        return state

    def _set(self, **fields: Any) -> None:
        with self.lock:
            self.state.update(fields)

    def start(self) -> dict[str, Any]:
        """Start a fine-tune unless one runs; refused (status stays) with fewer than MIN_MASKS reviewed masks."""
        with self.lock:
            if self.state["status"] not in ("training", "ranking"):
                count = len(self.session.store.saved())
                if count < MIN_MASKS:
                    self.state = {"status": "refused", "progress": 0.0,
                                  "message": f"{count} reviewed mask(s); save at least {MIN_MASKS} before training on them"}
                else:
                    self.state = {"status": "training", "progress": 0.0, "message": f"fine-tuning on {count} masks"}
                    self.started = time.monotonic()
                    self.thread = threading.Thread(target=self._run, name="unetkit-finetune", daemon=True)
                    self.thread.start()
            return dict(self.state)

    def _run(self) -> None:
        from unetkit.training.recipes import resolve_train_config
        from unetkit.training.runner import run_training

        session = self.session
        run_dir = session.out_dir / "runs" / time.strftime("finetune-%Y%m%dT%H%M%S", time.gmtime())
        try:
            result = run_training(resolve_train_config({
                "init_model": str(session.model_path), "out_dir": str(run_dir), "data": {"data_dir": str(session.out_dir)},
                "time_budget_min": session.config.finetune_minutes, "runtime": {"device": session.options.device}}))
            iou = result.val_metrics.get("iou")
            self._set(status="ranking", progress=0.9, message=f"predicting again with {result.model_path}")
            session.use_model(Path(result.model_path))
            self._set(status="done", progress=1.0, model=str(result.model_path),
                      message=f"fine-tuned in {time.monotonic() - self.started:.0f} s"
                      + (f", validation IoU {iou:.3f}" if iou is not None else "") + "; ranked again")
        except UserError as exc:
            self._set(status="failed", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a background thread has no caller: the page must hear of it
            log.exception("fine-tune failed")
            self._set(status="failed", message=f"{type(exc).__name__}: {exc}")
