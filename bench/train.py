"""Benchmark: our reward-model and DPO wrappers versus plain TRL scripts (same model, data, settings).

    python bench/train.py [--pairs 2000] [--steps 20] [--batch 16] [--repeats 2] [--dpo-epochs 1] [--shuffled]

1. Throughput (pairs/s, timed from model load to the end of training, data preparation included) of
   ``trainer.reward.train_reward_model`` vs a plain TRL ``RewardTrainer`` script and of
   ``trainer.policy.train_policy`` (DPO + LoRA) vs a plain TRL ``DPOTrainer`` + peft script, on the
   same tiny policy, the same pairs and the same settings (steps, batch, learning rate, max_length,
   LoRA r/alpha/targets, beta, seed, float32: TRL's configs default to bf16 autocast, turned off
   here as in the wrapper). The only differences are what the wrapper chooses:
   - batches of pairs of similar token length (transformers' length-grouped sampler; the batch
     order is still shuffled) for both trainers, where the plain scripts take TRL's default random
     batches. Every batch is padded to its longest sequence: on these pairs a random batch of 16 is
     62 % real tokens, a length-grouped one 95 %;
   - for DPO, the reference log-probs are precomputed when training passes over the pairs more than
     once (``--dpo-epochs`` > 1: one reference forward per pair instead of one per pair and epoch),
     and computed on the fly, like the plain script, in a single pass, where precomputing only adds
     its dataset caching.
   ``--shuffled`` gives our side random batches too: what is left is the wrapper's own cost.
   Runs alternate (ours, plain, plain, ours, ...) after an untimed warm-up, and the best of
   ``--repeats`` is kept for each, so warm-up costs and noise from other jobs on the machine do not
   favour either side.
2. Wall time of reward model + DPO (one epoch each, held-out evaluation included) on ``--pairs``
   pairs with the tiny policy (the bootstrap architecture: 2-layer Llama, hidden 256, head_dim 64).

Uses CUDA when present. Last line: ``rm_ratio=... dpo_ratio=... rm_dpo_2k_s=...`` (ratio = ours /
plain TRL throughput; >= 1.0 means the wrapper costs nothing).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.bootstrap import DEMO_CORPUS, BootstrapConfig, build_model, build_tokenizer
from trainer.chat import CHAT_TEMPLATE
from trainer.data import load_demonstrations, write_jsonl
from trainer.modeling import LORA_TARGETS
from trainer.policy import PolicyConfig, train_policy
from trainer.reward import RewardConfig, train_reward_model

LR_RM, LR_DPO, MAX_LEN, BETA, SEED = 1e-3, 5e-4, 96, 0.1, 42


def tiny_policy(out: Path) -> str:
    """The bootstrap architecture and tokenizer, untrained (speed does not depend on the weights)."""
    import torch

    cfg = BootstrapConfig()
    items = load_demonstrations(cfg.corpus)
    tok = build_tokenizer(
        [*(f"{r['prompt']}\n{r['completion']}" for r in items), CHAT_TEMPLATE], cfg.vocab_size
    )
    torch.manual_seed(0)
    build_model(cfg, tok).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return str(out)


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = load_demonstrations(DEMO_CORPUS)
    rows = []
    for _ in range(n):
        it = rng.choice(items)
        base = it["completion"].split(". ")[0].rstrip(".!")
        rows.append({"prompt": it["prompt"], "chosen": base + " Great!", "rejected": base + " Bad."})
    return rows


def conversational(rows: list[dict]) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]


def common_args(out: str, steps: int, bs: int, lr: float) -> dict:
    import torch

    return dict(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=bs,
        learning_rate=lr,
        seed=SEED,
        data_seed=SEED,
        bf16=False,  # TRL's configs default to bf16 autocast; ours trains in float32, so the same here
        fp16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=5,
        disable_tqdm=True,
        max_length=MAX_LEN,
        use_cpu=not torch.cuda.is_available(),
    )


def plain_trl_reward(model_dir: str, rows: list[dict], steps: int, bs: int, out: str) -> float:
    """The plain TRL script: RewardTrainer on conversational pairs, same backbone and settings."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig as C
    from trl import RewardTrainer

    t0 = time.monotonic()  # like ours: model loading + data preparation + training
    set_seed(SEED)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    args = C(**common_args(out, steps, bs, LR_RM))
    data = Dataset.from_list(conversational(rows))
    RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok).train()
    return steps * bs / (time.monotonic() - t0)


def plain_trl_dpo(model_dir: str, rows: list[dict], steps: int, bs: int, out: str) -> float:
    """The plain TRL script: DPOTrainer + LoRA with TRL defaults (reference computed on the fly)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    t0 = time.monotonic()  # like ours: model loading + data preparation + training
    set_seed(SEED)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    args = DPOConfig(**common_args(out, steps, bs, LR_DPO), beta=BETA)
    data = Dataset.from_list(conversational(rows))
    DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora).train()
    return steps * bs / (time.monotonic() - t0)


def ours_reward(policy: str, data: Path, steps: int, bs: int, out: Path, grouped: bool = True) -> float:
    cfg = RewardConfig(
        group_by_length=grouped,
        backbone=policy,
        max_steps=steps,
        per_device_train_batch_size=bs,
        learning_rate=LR_RM,
        max_length=MAX_LEN,
        eval_fraction=0.0,
        warmup_ratio=0.0,
        seed=SEED,
    )
    return steps * bs / train_reward_model(cfg, data, out).metrics["train_s"]


def ours_dpo(policy: str, data: Path, steps: int, bs: int, out: Path, grouped: bool = True) -> float:
    cfg = PolicyConfig(
        group_by_length=grouped,
        base_model=policy,
        max_steps=steps,
        per_device_train_batch_size=bs,
        learning_rate=LR_DPO,
        max_length=MAX_LEN,
        beta=BETA,
        lora_r=8,
        lora_alpha=16,
        eval_fraction=0.0,
        eval_prompts=0,
        seed=SEED,
    )
    return steps * bs / train_policy(cfg, data, out).metrics["train_s"]


def compare(name: str, ours, plain, repeats: int, tmp: Path) -> tuple[float, float]:
    """Best-of-``repeats`` throughput of each, in alternating order (ours, plain, plain, ours, ...)."""
    best = {"ours": 0.0, "plain": 0.0}
    order = []
    for i in range(repeats):
        order += [("ours", ours), ("plain", plain)] if i % 2 == 0 else [("plain", plain), ("ours", ours)]
    for j, (who, fn) in enumerate(order):
        out = tmp / f"{name}-{who}-{j}"
        pps = fn(out)
        shutil.rmtree(out, ignore_errors=True)
        print(f"  {name} {who}: {pps:.1f} pairs/s", flush=True)
        best[who] = max(best[who], pps)
    return best["ours"], best["plain"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=2000, help="pairs for the RM + DPO wall time")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per throughput run")
    ap.add_argument("--batch", type=int, default=16, help="pairs per optimizer step")
    ap.add_argument("--repeats", type=int, default=2, help="throughput runs per side (best kept)")
    ap.add_argument(
        "--dpo-epochs",
        type=int,
        default=1,
        help="passes over the --steps x --batch pairs in the DPO comparison",
    )
    ap.add_argument("--policy", default="", help="policy dir (default: untrained bootstrap architecture)")
    ap.add_argument("--skip-compare", action="store_true", help="only the RM + DPO wall time")
    ap.add_argument(
        "--shuffled",
        action="store_true",
        help="our side with random batches too (no length grouping): the wrapper's own cost alone",
    )
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        policy = a.policy or tiny_policy(tmp / "policy")
        rows = make_pairs(a.pairs)
        bench_rows = make_pairs(a.steps * a.batch, seed=1)
        small = write_jsonl(bench_rows, tmp / "small.jsonl")
        full = write_jsonl(rows, tmp / "pairs.jsonl")

        rm_ratio = dpo_ratio = float("nan")
        if not a.skip_compare:
            # Untimed warm-up of both code paths (first-call costs: kernels, dataset caches).
            plain_trl_reward(policy, bench_rows[: 2 * a.batch], 2, a.batch, str(tmp / "warm-rm"))
            plain_trl_dpo(policy, bench_rows[: 2 * a.batch], 2, a.batch, str(tmp / "warm-dpo"))
            s, b = a.steps, a.batch
            ours_rm, plain_rm = compare(
                "reward",
                lambda out: ours_reward(policy, small, s, b, out, grouped=not a.shuffled),
                lambda out: plain_trl_reward(policy, bench_rows, s, b, str(out)),
                a.repeats,
                tmp,
            )
            ds = s * a.dpo_epochs  # both sides: the same steps over the same pairs
            ours_d, plain_d = compare(
                "dpo",
                lambda out: ours_dpo(policy, small, ds, b, out, grouped=not a.shuffled),
                lambda out: plain_trl_dpo(policy, bench_rows, ds, b, str(out)),
                a.repeats,
                tmp,
            )
            rm_ratio, dpo_ratio = ours_rm / plain_rm, ours_d / plain_d
            print(f"reward: ours {ours_rm:.1f} pairs/s, plain TRL {plain_rm:.1f} pairs/s")
            print(f"dpo:    ours {ours_d:.1f} pairs/s, plain TRL {plain_d:.1f} pairs/s")

        # Wall time of reward model + DPO on all pairs (one epoch each), held-out evaluation included.
        t0 = time.monotonic()
        rm = train_reward_model(
            RewardConfig(
                backbone=policy,
                num_train_epochs=1,
                learning_rate=LR_RM,
                max_length=MAX_LEN,
                per_device_train_batch_size=a.batch,
            ),
            full,
            tmp / "rm-full",
        )
        t_rm = time.monotonic() - t0
        dpo = train_policy(
            PolicyConfig(
                base_model=policy,
                max_length=MAX_LEN,
                per_device_train_batch_size=a.batch,
                learning_rate=LR_DPO,
                eval_prompts=8,
            ),
            full,
            tmp / "dpo-full",
        )
        wall = time.monotonic() - t0
        print(
            f"reward model + DPO on {a.pairs} pairs: {wall:.1f} s (reward model {t_rm:.1f} s, held-out "
            f"accuracy {rm.metrics['eval']['accuracy']:.3f}; DPO {wall - t_rm:.1f} s, implicit-reward "
            f"accuracy {dpo.metrics['eval']['implicit_reward_accuracy']:.3f})"
        )
        print(f"rm_ratio={rm_ratio:.3f} dpo_ratio={dpo_ratio:.3f} rm_dpo_2k_s={wall:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
