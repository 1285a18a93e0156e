"""Fixtures for trainer tests: a tiny random policy, a tiny reward model and learnable preference sets.

Most tests use ``build_tiny_policy`` (a random 2-layer Llama with the bootstrap architecture, built in
seconds): the learnable rule below does not need a pretrained model. Only the bootstrap test runs the
real (short) pretraining path.
"""

from __future__ import annotations

import json
import os
import random

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest

from trainer.bootstrap import DEMO_CORPUS


def corpus(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in DEMO_CORPUS.read_text().splitlines()]
    return rows[:n] if n else rows


def rule_pairs(n: int, seed: int = 0, conversational: bool = False) -> list[dict]:
    """Learnable preferences: the chosen answer ends with ' Great!', the rejected one with ' Bad.'"""
    rng = random.Random(seed)
    rows = []
    for item in rng.sample(corpus(), n):
        base = item["response"].split(". ")[0].rstrip(".!")
        prompt, chosen, rejected = item["prompt"], base + " Great!", base + " Bad."
        if conversational:
            prompt = [{"role": "user", "content": prompt}]
            chosen = [{"role": "assistant", "content": chosen}]
            rejected = [{"role": "assistant", "content": rejected}]
        rows.append(
            {"id": len(rows), "prompt": prompt, "chosen": chosen, "rejected": rejected, "weight": 1.0}
        )
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> str:
    """A random tiny Llama (bootstrap architecture, head_dim 64, chat template); no pretraining."""
    from trainer.generation.tiny import build_tiny_policy

    return str(build_tiny_policy(tmp_path_factory.mktemp("policy") / "tiny"))


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> str:
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", rule_pairs(120, seed=1))


@pytest.fixture(scope="session")
def heldout_file(tmp_path_factory) -> str:
    rows = rule_pairs(160, seed=1)[120:]  # same sampling order: disjoint from pairs_file
    return write_jsonl(tmp_path_factory.mktemp("data") / "heldout.jsonl", rows)


@pytest.fixture(scope="session")
def heldout_rows(heldout_file) -> list[dict]:
    from trainer.data import load_preferences

    return load_preferences(heldout_file)


RM_STEPS = 10


@pytest.fixture(scope="session")
def reward_run(tiny_policy, pairs_file, heldout_rows, tmp_path_factory):
    """A reward model on the tiny policy backbone (InstructGPT setup), trained on the rule; with events."""
    from trainer.reward import RewardConfig, train_reward_model

    cfg = RewardConfig(
        backbone=tiny_policy,
        learning_rate=2e-3,
        max_steps=RM_STEPS,
        per_device_train_batch_size=8,
        max_length=64,
        logging_steps=1,
    )
    events: list = []
    out = tmp_path_factory.mktemp("rm") / "rm"
    result = train_reward_model(cfg, pairs_file, out, progress=events.append, eval_rows=heldout_rows)
    return result, events
