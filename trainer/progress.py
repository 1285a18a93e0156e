"""Progress reporting: a tiny callback protocol the web app renders as a progress bar.

Training code emits ``ProgressEvent``s; ``HFProgressCallback`` adapts a transformers
``Trainer`` to this protocol and ``TqdmProgress`` is the CLI implementation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from transformers import TrainerCallback


@dataclass
class ProgressEvent:
    stage: str  # e.g. "bootstrap", "sft", "reward", "dpo", "rloo", "eval"
    step: int
    total: int
    loss: float | None = None
    eta_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


@runtime_checkable
class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


class StageProgress:
    """Emits events for one stage with a simple linear ETA; safe to use with ``progress=None``."""

    def __init__(self, progress: ProgressCallback | None, stage: str, total: int):
        self.progress, self.stage, self.total = progress, stage, max(int(total), 1)
        self.t0 = time.monotonic()

    def update(self, step: int, loss: float | None = None, **metrics: Any) -> None:
        if self.progress is None:
            return
        elapsed = time.monotonic() - self.t0
        eta = elapsed / step * (self.total - step) if step > 0 else None
        self.progress(ProgressEvent(self.stage, step, self.total, loss, eta, dict(metrics)))


class HFProgressCallback(TrainerCallback):
    """transformers ``TrainerCallback`` that forwards step/loss/eta to a ``ProgressCallback``."""

    def __init__(self, progress: ProgressCallback | None, stage: str):
        self.progress, self.stage = progress, stage
        self.last_loss: float | None = None
        self.last_metrics: dict[str, float] = {}
        self._stage: StageProgress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._stage = StageProgress(self.progress, self.stage, state.max_steps)
        self._stage.update(0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            logging.getLogger("trainer").info("%s step %d: %s", self.stage, state.global_step, logs)
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
        if logs:  # accuracy-like figures (e.g. rewards/accuracies) ride along for the plots
            self.last_metrics = {
                k: float(v) for k, v in logs.items() if "acc" in k and isinstance(v, (int, float))
            }

    def on_step_end(self, args, state, control, **kwargs):
        if self._stage is not None:
            self._stage.update(state.global_step, self.last_loss, **self.last_metrics)


class TqdmProgress:
    """CLI progress bar on stderr, one bar per stage."""

    def __init__(self) -> None:
        self._bar = None
        self._stage: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if event.stage != self._stage or self._bar is None:
            self.close()
            self._bar = tqdm(total=event.total, desc=event.stage, leave=True, dynamic_ncols=True)
            self._stage = event.stage
        self._bar.n = event.step
        if event.loss is not None:
            self._bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        self._bar.refresh()
        if event.step >= event.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None
