"""Policy update with LoRA: DPO (and its variants) or RLOO against a reward model.

DPO (TRL ``DPOTrainer``): the reference is the serving version — the base model, or base plus
``reference_adapter``; in the latter case training continues that adapter and TRL keeps a frozen
copy as the reference. ``loss_type`` picks TRL's variants ("sigmoid" = DPO, "ipo", "hinge", ...;
several comma-separated are combined); "simpo" runs TRL's reference-free CPO trainer with SimPO.
RLOO (TRL ``RLOOTrainer``): samples ``num_generations`` responses per prompt, scores them with the
reward model and penalises KL to the reference with coefficient ``beta``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import RunResult, RunWriter, default_run_dir, resolve_weights
from .config import TrainingOptions, opt, trainer_kwargs
from .data import data_hash, load_preferences, split, to_conversational
from .errors import ConfigError, MissingFileError
from .evaluate import pair_metrics, sample_metrics
from .progress import HFProgressCallback, ProgressCallback
from .reward import quiet
from .scoring import RewardScorer, load_policy


@dataclass
class PolicyConfig(TrainingOptions):
    algorithm: str = opt("dpo", "'dpo' (offline, preference pairs) or 'rloo' (online, reward model).")
    base_model: str = opt(
        "", "Policy base: '' = the bootstrapped tiny model, a model dir, a run dir or a hub id."
    )
    reference_adapter: str = opt("", "LoRA adapter of the serving version ('' = the base is the reference).")
    loss_type: str = opt(
        "sigmoid",
        "DPO loss: 'sigmoid' (DPO), 'ipo', 'hinge', 'robust', ..., or 'simpo'; comma-separate to combine.",
    )
    beta: float = opt(0.1, "DPO temperature beta / RLOO KL coefficient to the reference.")
    simpo_gamma: float = opt(0.5, "SimPO target reward margin (loss_type='simpo').")
    precompute_ref_log_probs: str = opt(
        "auto",
        "DPO: 'yes' = reference log-probs in one pass before training, 'no' = on the fly in each step, "
        "'auto' = precompute when training passes over the pairs more than once (each is then computed "
        "once instead of once per epoch; in a single pass precomputing only adds its caching cost).",
    )
    group_by_length: bool = opt(
        True,
        "DPO: batch pairs of similar token length (transformers' length-grouped sampler, batch order "
        "still shuffled). Each batch is padded to its longest sequence, so on varied lengths this cuts "
        "the padded tokens of every policy and reference forward (a third of them on the demo pairs).",
    )
    lora_r: int = opt(8, "LoRA rank (<= 16 for vLLM --max-lora-rank 16).")
    lora_alpha: int = opt(16, "LoRA alpha.")
    lora_dropout: float = opt(0.0, "LoRA dropout.")
    learning_rate: float = opt(5e-4, "Peak learning rate.")
    num_train_epochs: float = opt(1.0, "Passes over the training data.")
    num_generations: int = opt(4, "RLOO: responses sampled per prompt.")
    max_completion_length: int = opt(32, "RLOO: tokens generated per response.")
    temperature: float = opt(1.0, "RLOO: sampling temperature.")
    eval_prompts: int = opt(16, "Held-out prompts sampled for KL and reward before/after (0 to skip).")
    eval_max_new_tokens: int = opt(32, "Tokens generated per held-out prompt in evaluation.")


DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)


def loss_types(config: PolicyConfig) -> list[str]:
    return [s.strip() for s in config.loss_type.split(",") if s.strip()]


def validate(config: PolicyConfig, reward_model_dir: str | Path | None = None) -> None:
    """Reject bad settings before any run directory or model is created."""
    from .modeling import MAX_LORA_RANK

    if config.algorithm not in ("dpo", "rloo"):
        raise ConfigError(f"algorithm must be 'dpo' or 'rloo', got {config.algorithm!r}")
    if config.algorithm == "rloo" and not reward_model_dir:
        raise ConfigError("RLOO needs a reward model (reward_model_dir / --reward-model)")
    if config.beta <= 0:
        raise ConfigError(f"beta must be > 0, got {config.beta}")
    if not 1 <= config.lora_r <= MAX_LORA_RANK:
        raise ConfigError(
            f"lora_r must be in 1..{MAX_LORA_RANK} (vLLM runs with --max-lora-rank {MAX_LORA_RANK})"
        )
    if config.precompute_ref_log_probs not in ("auto", "yes", "no"):
        raise ConfigError(
            f"precompute_ref_log_probs must be 'auto', 'yes' or 'no', got {config.precompute_ref_log_probs!r}"
        )
    losses = loss_types(config)
    if not losses:
        raise ConfigError("loss_type is empty")
    if "simpo" in losses and len(losses) > 1:
        raise ConfigError("'simpo' cannot be combined with other loss types")
    unknown = [t for t in losses if t != "simpo" and t not in DPO_LOSS_TYPES]
    if unknown:
        raise ConfigError(
            f"unknown loss_type {', '.join(unknown)}; choose from {', '.join(DPO_LOSS_TYPES)} or 'simpo'"
        )
    if config.algorithm == "rloo":
        if config.num_generations < 2:
            raise ConfigError("RLOO needs num_generations >= 2 (the leave-one-out baseline)")
        if config.per_device_train_batch_size % config.num_generations:
            raise ConfigError(
                f"per_device_train_batch_size ({config.per_device_train_batch_size}) must be a multiple "
                f"of num_generations ({config.num_generations})"
            )


def precompute_reference(config: PolicyConfig, n_train: int) -> bool:
    """Whether DPO precomputes the reference log-probs (see ``precompute_ref_log_probs``)."""
    if config.precompute_ref_log_probs != "auto":
        return config.precompute_ref_log_probs == "yes"
    if config.max_steps > 0:
        pairs_per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
        return config.max_steps * pairs_per_step > n_train
    return config.num_train_epochs > 1


def _dataset(rows: list[dict], tok):
    from datasets import Dataset

    conv = bool(getattr(tok, "chat_template", None))
    return Dataset.from_list([to_conversational(r) if conv else r for r in rows])


def _text_length(row: dict) -> int:
    """Characters of prompt plus the longer response: a cheap stand-in for the token length."""
    return len(repr(row["prompt"])) + max(len(repr(row["chosen"])), len(repr(row["rejected"])))


def _by_length(dataset):
    """TRL's tokenized pairs with a ``length`` column (prompt plus the longer response, in tokens) and
    without the text columns, for transformers' length-grouped sampler."""
    keep = ("prompt_ids", "chosen_ids", "rejected_ids")  # and the precomputed ``ref_*`` log-probs
    text = [c for c in dataset.column_names if c not in keep and not c.startswith("ref_")]
    return dataset.remove_columns(text).map(
        lambda ex: {"length": len(ex["prompt_ids"]) + max(len(ex["chosen_ids"]), len(ex["rejected_ids"]))}
    )


def _load_trainable(config: PolicyConfig):
    """Base model plus either a fresh LoRA config or the serving adapter made trainable."""
    from peft import PeftModel

    from .modeling import load_causal_lm, lora_config

    model, tok = load_causal_lm(config.base_model, config.device)
    if config.reference_adapter:
        adapter = resolve_weights(config.reference_adapter, "adapter")
        if not (adapter / "adapter_config.json").is_file():
            raise MissingFileError(f"no LoRA adapter (adapter_config.json) in {config.reference_adapter}")
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True), tok, None
    return model, tok, lora_config(config.lora_r, config.lora_alpha, config.lora_dropout)


def _train_dpo(config: PolicyConfig, rows: list[dict], run: RunWriter, progress) -> Any:
    from trl import DPOConfig, DPOTrainer

    model, tok, peft_config = _load_trainable(config)
    common = dict(**trainer_kwargs(config, run.dir), max_length=config.max_length, beta=config.beta)
    losses = loss_types(config)
    if losses == ["simpo"]:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=config.simpo_gamma)
        cls = CPOTrainer
    else:
        args = DPOConfig(
            **common,
            loss_type=losses,
            precompute_ref_log_probs=precompute_reference(config, len(rows)),
            train_sampling_strategy="group_by_length" if config.group_by_length else "random",
            remove_unused_columns=not config.group_by_length,  # keep ``length`` for the sampler
        )
        cls = DPOTrainer
        # The training sampler shuffles, so the order of the rows only matters to the reference
        # precompute, which reads them in order: sorted, its batches are padded little.
        rows = sorted(rows, key=_text_length)
    trainer = cls(
        model=model,
        args=args,
        train_dataset=_dataset(rows, tok),
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[HFProgressCallback(progress, "dpo")],
    )
    if cls is DPOTrainer and config.group_by_length:
        trainer.train_dataset = _by_length(trainer.train_dataset)
    quiet(trainer)
    return trainer, trainer.train(), tok


def _train_rloo(
    config: PolicyConfig, rows: list[dict], run: RunWriter, progress, scorer: RewardScorer
) -> Any:
    from trl import RLOOConfig, RLOOTrainer

    def reward_model(prompts, completions, **kwargs) -> list[float]:
        return scorer.score(prompts, completions)

    model, tok, peft_config = _load_trainable(config)
    prompts, seen = [], set()
    for r in rows:
        key = repr(r["prompt"])
        if key not in seen:
            seen.add(key)
            prompts.append({"prompt": r["prompt"]})
    args = RLOOConfig(
        **trainer_kwargs(config, run.dir),
        beta=config.beta,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_k=0,
    )
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=reward_model,
        args=args,
        train_dataset=_dataset(prompts, tok),
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[HFProgressCallback(progress, "rloo")],
    )
    quiet(trainer)
    return trainer, trainer.train(), tok


def train_policy(
    config: PolicyConfig,
    data_path: str | Path,
    out_dir: str | Path | None = None,
    reward_model_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Train a LoRA adapter (``<run>/adapter``) with DPO or RLOO and measure it against the reference."""
    from transformers import set_seed

    validate(config, reward_model_dir)
    rows = load_preferences(data_path)
    train_rows, eval_rows = split(rows, config.eval_fraction, config.seed)
    out_dir = Path(out_dir) if out_dir else default_run_dir(config.algorithm)
    scorer = RewardScorer(reward_model_dir, config.device) if reward_model_dir else None
    with RunWriter(out_dir, config.algorithm, config, data_hash(data_path)) as run:
        set_seed(config.seed)  # LoRA weights are initialised randomly
        run.log("%s: %d train / %d held-out pairs", config.algorithm, len(train_rows), len(eval_rows))
        t0 = time.monotonic()
        if config.algorithm == "dpo":
            trainer, out, tok = _train_dpo(config, train_rows, run, progress)
        else:
            trainer, out, tok = _train_rloo(config, train_rows, run, progress, scorer)
        train_s = time.monotonic() - t0
        adapter_dir = run.dir / "adapter"
        trainer.model.save_pretrained(adapter_dir, selected_adapters=["default"])
        tok.save_pretrained(adapter_dir)
        logs = [h for h in trainer.state.log_history if "loss" in h]
        metrics: dict[str, Any] = {
            "train_loss": out.training_loss,
            "first_loss": logs[0]["loss"] if logs else None,
            "final_loss": logs[-1]["loss"] if logs else None,
            "steps": out.global_step,
            "train_s": round(train_s, 2),
            "n_train": len(train_rows),
            "train_log": {k: logs[-1][k] for k in logs[-1] if "/" in k} if logs else {},
        }
        del trainer
        metrics.update(_evaluate(config, adapter_dir, eval_rows, scorer))
        return run.finish(metrics)


def _evaluate(config: PolicyConfig, adapter_dir: Path, eval_rows: list[dict], scorer) -> dict[str, Any]:
    policy, tok = load_policy(config.base_model, adapter_dir, config.device)
    reference, _ = load_policy(config.base_model, config.reference_adapter or None, config.device)
    prompts = [r["prompt"] for r in eval_rows][: config.eval_prompts]
    return {
        "eval": pair_metrics(policy, reference, tok, eval_rows, config.beta),
        "samples": sample_metrics(
            policy, reference, tok, prompts, scorer, config.eval_max_new_tokens, config.seed
        ),
    }
