"""Supervised fine-tuning on labeler-written demonstrations (TRL ``SFTTrainer``, LoRA by default).

Loss is on the response tokens only (``completion_only_loss``); the chat template is applied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .artifacts import RunResult, RunWriter, default_run_dir
from .config import TrainingOptions, opt, trainer_kwargs
from .data import data_hash, load_demonstrations, split, to_conversational
from .progress import HFProgressCallback, ProgressCallback
from .reward import quiet


@dataclass
class SFTJobConfig(TrainingOptions):
    base_model: str = opt(
        "", "Policy base: '' = the bootstrapped tiny model, a model dir, a run dir or a hub id."
    )
    use_lora: bool = opt(True, "Train a LoRA adapter (written to adapter/) instead of all weights (model/).")
    lora_r: int = opt(8, "LoRA rank (<= 16).")
    lora_alpha: int = opt(16, "LoRA alpha.")
    lora_dropout: float = opt(0.0, "LoRA dropout.")
    learning_rate: float = opt(1e-3, "Peak learning rate.")
    num_train_epochs: float = opt(2.0, "Passes over the demonstrations.")


def run_sft(
    config: SFTJobConfig,
    data_path: str | Path,
    out_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Fine-tune the policy on demonstrations; metrics include first/final training loss and held-out loss."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from .modeling import load_causal_lm, lora_config

    rows = load_demonstrations(data_path)
    train_rows, eval_rows = split(rows, config.eval_fraction, config.seed)
    out_dir = Path(out_dir) if out_dir else default_run_dir("sft")
    with RunWriter(out_dir, "sft", config, data_hash(data_path)) as run:
        set_seed(config.seed)
        t0 = time.monotonic()
        model, tok = load_causal_lm(config.base_model, config.device)
        conv = bool(getattr(tok, "chat_template", None))
        to_ds = lambda rs: Dataset.from_list([to_conversational(r) if conv else r for r in rs])  # noqa: E731
        args = SFTConfig(
            **trainer_kwargs(config, run.dir), max_length=config.max_length, completion_only_loss=True
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=to_ds(train_rows),
            eval_dataset=to_ds(eval_rows) if eval_rows else None,
            processing_class=tok,
            peft_config=lora_config(config.lora_r, config.lora_alpha, config.lora_dropout)
            if config.use_lora
            else None,
            callbacks=[HFProgressCallback(progress, "sft")],
        )
        quiet(trainer)
        eval_before = trainer.evaluate()["eval_loss"] if eval_rows else None
        out = trainer.train()
        eval_after = trainer.evaluate()["eval_loss"] if eval_rows else None
        weights = run.dir / ("adapter" if config.use_lora else "model")
        trainer.model.save_pretrained(weights)
        tok.save_pretrained(weights)
        logs = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        metrics = {
            "train_loss": out.training_loss,
            "first_loss": logs[0] if logs else None,
            "final_loss": logs[-1] if logs else None,
            "eval_loss_before": eval_before,
            "eval_loss_after": eval_after,
            "steps": out.global_step,
            "n_train": len(train_rows),
            "train_s": round(time.monotonic() - t0, 2),
        }
        return run.finish(metrics)
