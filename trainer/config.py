"""Config dataclass helpers shared by all jobs (TRL style: every field has help text)."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, MissingFileError

T = TypeVar("T")


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (``default`` may be a list: copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainingOptions:
    """Options every training job shares."""

    seed: int = opt(42, "Random seed; same seed and same data give the same result.")
    learning_rate: float = opt(5e-4, "Peak learning rate (AdamW, linear decay).")
    num_train_epochs: float = opt(1.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = opt(-1, "Stop after this many optimizer steps (-1: use num_train_epochs).")
    per_device_train_batch_size: int = opt(8, "Batch size per optimizer step.")
    gradient_accumulation_steps: int = opt(1, "Micro-batches accumulated per optimizer step.")
    warmup_ratio: float = opt(0.0, "Fraction of steps for linear warm-up.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    max_length: int = opt(256, "Maximum tokens per sequence (prompt + response).")
    eval_fraction: float = opt(0.1, "Fraction of the data held out for evaluation.")
    logging_steps: int = opt(5, "Log the loss every N steps.")
    device: str = opt("auto", "'auto' (CUDA when available, else CPU), 'cpu' or 'cuda'.")
    full_determinism: bool = opt(False, "Use transformers' full determinism (slower, deterministic kernels).")


def trainer_kwargs(cfg: TrainingOptions, run_dir: Path) -> dict[str, Any]:
    """Shared keyword arguments for TRL/transformers TrainingArguments subclasses."""
    from .modeling import use_cpu

    return dict(
        output_dir=str(run_dir / "checkpoints"),
        seed=cfg.seed,
        data_seed=cfg.seed,
        full_determinism=cfg.full_determinism,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=max(cfg.per_device_train_batch_size, 8),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=use_cpu(cfg.device),
        dataloader_num_workers=0,
        bf16=False,
        fp16=False,
    )


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    return cls(**data)


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Defaults, then a JSON file (``{"config": {...}}`` from a run dir works too), then overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg})") from None
        if isinstance(data.get("config"), dict) and "kind" in data:
            data = data["config"]
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data)


def field_help(cls: type) -> dict[str, tuple[Any, str]]:
    out = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = (default, f.metadata.get("help", ""))
    return out
