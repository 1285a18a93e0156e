"""Real (tiny) training runs: the metrics must move in the right direction.

Tiny configs (a random 2-layer Llama, 64-token sequences, a few optimizer steps) keep the whole file
to a few minutes of CPU; the rule-based preferences are learnable from scratch in that budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import RM_STEPS, corpus, rule_pairs, write_jsonl

from trainer.artifacts import load_run
from trainer.errors import ConfigError, TokenizerMismatchError
from trainer.evaluate import GateConfig, decide, evaluate_candidate
from trainer.policy import PolicyConfig, train_policy
from trainer.reward import RewardConfig, train_reward_model
from trainer.scoring import RewardScorer, generate, load_policy, pairwise_metrics
from trainer.sft import SFTJobConfig, run_sft

TINY = dict(per_device_train_batch_size=8, max_length=64, logging_steps=1)


def test_bootstrap_artifacts(tmp_path):
    """The real bootstrap code path, a few steps: architecture, chat template, loss falls, run dir."""
    from transformers import AutoConfig, AutoTokenizer

    from trainer.bootstrap import BootstrapConfig, bootstrap_policy

    cfg = BootstrapConfig(max_steps=4, warmup_ratio=0.0, **TINY)
    model_dir = bootstrap_policy(cfg, tmp_path / "bootstrap")
    hf_cfg = AutoConfig.from_pretrained(model_dir)
    assert hf_cfg.model_type == "llama" and hf_cfg.hidden_size // hf_cfg.num_attention_heads == 64
    tok = AutoTokenizer.from_pretrained(model_dir)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>\nHi<|end|>\n<|assistant|>\n" and tok.eos_token == "<|end|>"
    run = load_run(model_dir.parent)
    assert run.kind == "bootstrap" and run.data_hash and run.metrics["steps"] == 4
    assert run.metrics["final_loss"] < run.metrics["first_loss"], run.metrics
    assert set(run.metrics["samples"]) and (model_dir / "model.safetensors").is_file()


def test_sft_conversational_loss_falls(tiny_policy, tmp_path):
    demos = [
        {"prompt": [{"role": "user", "content": r["prompt"]}], "completion": r["response"]}
        for r in corpus(48)
    ]
    path = write_jsonl(tmp_path / "demos.jsonl", demos)
    cfg = SFTJobConfig(base_model=tiny_policy, max_steps=6, learning_rate=5e-3, eval_fraction=0.25, **TINY)
    result = run_sft(cfg, path, tmp_path / "sft")
    m = result.metrics
    assert m["final_loss"] < m["first_loss"] and m["eval_loss_after"] < m["eval_loss_before"], m
    assert (result.run_dir / "adapter" / "adapter_config.json").is_file()
    assert load_run(result.run_dir).config["max_steps"] == 6  # config round-trips


def test_reward_model_learns_rule(reward_run):
    result, events = reward_run
    m = result.metrics
    assert m["eval"]["accuracy"] >= 0.9, m  # chance is 0.5
    assert m["eval"]["reward_chosen_mean"] > m["eval"]["reward_rejected_mean"]
    assert events and events[-1].step == events[-1].total == RM_STEPS and events[-1].loss is not None
    loaded = load_run(result.run_dir)
    assert loaded.metrics == json.loads(json.dumps(m)) and loaded.kind == "reward"
    assert (result.run_dir / "data_hash.txt").read_text().strip() == loaded.data_hash


def test_reward_model_is_deterministic(tiny_policy, pairs_file, heldout_rows, tmp_path):
    cfg = RewardConfig(backbone=tiny_policy, learning_rate=2e-3, max_steps=2, **TINY)
    r1 = train_reward_model(cfg, pairs_file, tmp_path / "rm1", eval_rows=heldout_rows[:16])
    r2 = train_reward_model(cfg, pairs_file, tmp_path / "rm2", eval_rows=heldout_rows[:16])
    assert r1.metrics["eval"] == r2.metrics["eval"]  # same seed, same data: same result
    assert r1.metrics["train_loss"] == r2.metrics["train_loss"]


@pytest.mark.slow
def test_reward_minilm_backbone(pairs_file, heldout_rows, tmp_path):
    cfg = RewardConfig(learning_rate=1e-4, max_steps=10, per_device_train_batch_size=8, max_length=64)
    result = train_reward_model(cfg, pairs_file, tmp_path / "rm", eval_rows=heldout_rows)
    assert result.metrics["eval"]["accuracy"] >= 0.8, result.metrics
    # MiniLM gets the mean-pooling head (its sentence-embedding pooling) and the response-first input;
    # both are saved with the weights, and a plain Auto load gives the scorer the same model back.
    saved = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert saved["model_type"] == "bert-mean-pool" and saved["reward_input_layout"] == "response_first"
    scorer = RewardScorer(result.run_dir)
    assert type(scorer.model).__name__ == "MeanPoolBertForSequenceClassification"
    assert scorer.layout == "response_first"
    rows = heldout_rows[:8]
    again = pairwise_metrics(scorer, rows)["margin_mean"]
    assert again == pytest.approx(pairwise_metrics(RewardScorer(result.run_dir), rows)["margin_mean"])


def test_freeze_bottom_minilm():
    """freeze_layers=N fixes the embeddings and encoder layers 0..N-1; the rest and the head train."""
    from trainer.modeling import freeze_bottom, load_sequence_classifier

    model, _ = load_sequence_classifier("", "cpu", pooling="auto")
    assert freeze_bottom(model, 2) > 0
    for name, p in model.named_parameters():
        fixed = name.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1."))
        assert p.requires_grad is not fixed, name
    model, _ = load_sequence_classifier("", "cpu", pooling="auto")
    freeze_bottom(model, 0, embeddings=True)
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("bert.embeddings.")
    }
    assert freeze_bottom(model, 0) == 0
    for bad in (-1, 6):  # MiniLM has 6 layers: freezing all of them leaves only the head
        with pytest.raises(ConfigError, match="freeze_layers"):
            freeze_bottom(model, bad)


def test_reward_freeze_layers_and_length_grouping(tiny_policy, pairs_file, heldout_rows, tmp_path):
    """Frozen bottom weights come out of training unchanged; the length-grouped sampler runs."""
    from safetensors.torch import load_file

    cfg = RewardConfig(
        backbone=tiny_policy, learning_rate=2e-3, max_steps=3, freeze_layers=1, group_by_length=True, **TINY
    )
    result = train_reward_model(cfg, pairs_file, tmp_path / "rm", eval_rows=heldout_rows[:8])
    before = load_file(Path(tiny_policy) / "model.safetensors")
    after = load_file(result.run_dir / "model" / "model.safetensors")
    frozen = [k for k in after if k.startswith(("model.embed_tokens.", "model.layers.0."))]
    trained = [k for k in after if k.startswith("model.layers.1.")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    assert result.metrics["steps"] == 3


def hh_file(tmp_path: Path, n: int, seed: int) -> str:
    """Rule pairs written as HH-RLHF rows: chosen and rejected transcripts."""
    rows = [
        {key: f"\n\nHuman: {r['prompt']}\n\nAssistant: {r[key]}" for key in ("chosen", "rejected")}
        for r in rule_pairs(n, seed=seed)
    ]
    return write_jsonl(tmp_path / "hh.jsonl", rows)


def test_hh_check_converts_splits_and_trains(tiny_policy, tmp_path):
    """HH-RLHF transcripts become conversational pairs; the held-out split ignores the training seed."""
    from trainer.hh import HHCheckConfig, hh_check

    data = hh_file(tmp_path, 40, seed=3)
    tiny = dict(data=data, backbone=tiny_policy, pooling="auto", learning_rate=2e-3, max_steps=2, **TINY)
    results = [hh_check(HHCheckConfig(seed=seed, **tiny), tmp_path / f"hh-{seed}") for seed in (5, 6)]
    for result in results:
        assert load_run(result.run_dir).kind == "reward" and result.metrics["eval"]["n_pairs"] == 8
    train_splits = [(tmp_path / f".hh-{seed}.data" / "train.jsonl").read_text() for seed in (5, 6)]
    assert train_splits[0] == train_splits[1]  # same split for both seeds


def test_hh_cross_validation_holds_every_pair_out_once(tiny_policy, tmp_path):
    from trainer.data import split
    from trainer.hh import HHCheckConfig, fold_splits, hh_cross_validate

    folds = fold_splits(23, 4, seed=42)
    held = [i for _, h in folds for i in h]
    assert sorted(held) == list(range(23)) and [len(h) for _, h in folds] == [6, 6, 5, 6]
    assert all(set(t).isdisjoint(h) and len(t) + len(h) == 23 for t, h in folds)
    rows = list(range(20))
    assert split(rows, 0.25, 42) == tuple([rows[i] for i in ix] for ix in fold_splits(20, 4, 42)[0])

    data = hh_file(tmp_path, 30, seed=4)
    cfg = HHCheckConfig(
        data=data, backbone=tiny_policy, pooling="auto", learning_rate=2e-3, max_steps=2, folds=3, **TINY
    )
    summary = hh_cross_validate(cfg, tmp_path / "cv")
    assert [f["n_pairs"] for f in summary["folds"]] == [10, 10, 10] and summary["n_pairs"] == 30
    accs = [f["accuracy"] for f in summary["folds"]]
    assert summary["accuracy_mean"] == pytest.approx(sum(accs) / 3)
    assert summary["accuracy_pooled"] == pytest.approx(sum(accs) / 3)  # equal folds
    for k in range(3):
        assert load_run(tmp_path / "cv" / f"fold-{k}").kind == "reward"
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"][0]["accuracy"] == accs[0]
    with pytest.raises(ConfigError, match=r"cv\.json"):
        hh_cross_validate(cfg, tmp_path / "cv")
    with pytest.raises(ConfigError, match="folds"):
        hh_cross_validate(HHCheckConfig(data=data, folds=1), tmp_path / "cv1")


def test_minilm_every_layer_head(pairs_file, heldout_rows, tmp_path):
    """pooling="mean_layers": the head reads the masked mean of the embeddings and of all 6 layers."""
    from trainer.modeling import load_sequence_classifier

    cfg = RewardConfig(pooling="mean_layers", learning_rate=1e-4, max_steps=2, **TINY)
    run = train_reward_model(cfg, pairs_file, tmp_path / "rm", eval_rows=heldout_rows[:8]).run_dir
    scorer = RewardScorer(run)  # the reward trainer and the scorer both take the wide head
    assert scorer.model.config.pooled_layers == "all" and scorer.model.classifier.in_features == 2688

    model, tok = load_sequence_classifier("", "cpu", pooling="mean_layers")
    assert model.classifier.in_features == 7 * 384 and model.config.pooled_layers == "all"
    model.eval()
    texts = ["I can't help with that.", "Sure, here is a long and detailed answer to your question."]
    with torch.no_grad():
        batch = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0]
        alone = model(**tok(texts[:1], return_tensors="pt")).logits[0, 0]
    assert batch[0].item() == pytest.approx(alone.item(), abs=1e-5)  # padding does not move the reward
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, _ = load_sequence_classifier(str(tmp_path / "m"), "cpu", pooling="default")
    with torch.no_grad():
        assert torch.allclose(again(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0], batch)


def test_reward_pooling_validation(tiny_policy, pairs_file, tmp_path):
    from trainer.modeling import load_sequence_classifier

    for pooling in ("mean", "mean_layers"):
        with pytest.raises(ConfigError, match="BERT encoder"):
            load_sequence_classifier(tiny_policy, "cpu", pooling=pooling)
    with pytest.raises(ConfigError, match="input_layout"):
        train_reward_model(RewardConfig(input_layout="sideways"), pairs_file, tmp_path / "rm")
    assert not (tmp_path / "rm").exists()


def test_dpo_learns_rule_adapter_loads_and_gate(tiny_policy, pairs_file, heldout_file, reward_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = PolicyConfig(
        base_model=tiny_policy,
        learning_rate=5e-3,
        max_steps=10,
        eval_fraction=0.15,
        eval_prompts=2,
        eval_max_new_tokens=8,
        **TINY,
    )
    result = train_policy(cfg, pairs_file, tmp_path / "dpo")
    ev = result.metrics["eval"]
    # Before training policy == reference, so every implicit-reward margin is 0 (accuracy 0).
    assert ev["implicit_reward_accuracy"] >= 0.8 and ev["implicit_reward_margin"] > 0, result.metrics
    assert result.metrics["final_loss"] < result.metrics["first_loss"]
    assert "kl_to_reference" in result.metrics["samples"]

    adapter = result.run_dir / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] <= 16
    assert (adapter / "adapter_model.safetensors").is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_policy)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = base(ids).logits.clone()
        after = PeftModel.from_pretrained(base, str(adapter))(ids).logits
    assert not torch.allclose(before, after)

    gate = GateConfig(max_prompts=2, max_new_tokens=8, min_win_rate=0.0, max_kl=1e6)
    rm_dir = reward_run[0].run_dir
    report = evaluate_candidate(gate, result.run_dir, None, tiny_policy, rm_dir, heldout_file, None)
    assert report.decision == "pass", report.reasons
    assert report.metrics["pairs"]["implicit_reward_accuracy"] >= 0.8
    assert "win_rate" in report.metrics["samples"] and report.metrics["reward_model_pairs"]["accuracy"] > 0.5
    assert report.thresholds["max_kl"] == 1e6 and any("accuracy" in r for r in report.reasons)
    strict = decide(GateConfig(max_kl=-1.0, min_pair_accuracy=1.01), report.metrics)
    assert strict.decision == "fail"  # thresholds come from the config
    assert any("KL" in r for r in strict.reasons)
    assert any("accuracy" in r and "<" in r for r in strict.reasons)


def test_rloo_with_reward_model(tiny_policy, pairs_file, reward_run, tmp_path):
    cfg = PolicyConfig(
        algorithm="rloo",
        base_model=tiny_policy,
        learning_rate=1e-3,
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        eval_fraction=0.05,
        eval_prompts=2,
        eval_max_new_tokens=8,
        max_length=64,
        logging_steps=1,
    )
    result = train_policy(cfg, pairs_file, tmp_path / "rloo", reward_model_dir=reward_run[0].run_dir)
    m = result.metrics
    assert m["steps"] == 2 and (result.run_dir / "adapter" / "adapter_config.json").is_file()
    s = m["samples"]
    for key in ("kl_to_reference", "reward_reference_mean", "reward_candidate_mean", "win_rate"):
        assert isinstance(s[key], float), s  # KL and mean RM score before (reference) / after (candidate)
    assert load_run(result.run_dir).kind == "rloo"
    model, _ = load_policy(tiny_policy, result.run_dir)
    assert model.peft_config["default"].r == 8


@pytest.mark.parametrize("loss_type, grouped", [("ipo", False), ("simpo", True)])
def test_dpo_variants(tiny_policy, pairs_file, tmp_path, loss_type, grouped):
    cfg = PolicyConfig(
        base_model=tiny_policy,
        loss_type=loss_type,
        max_steps=2,
        precompute_ref_log_probs="yes",  # the other runs take the on-the-fly path (one pass)
        group_by_length=grouped,  # the other DPO runs use the default, length-grouped batches
        eval_fraction=0.1,
        eval_prompts=0,
        **TINY,
    )
    result = train_policy(cfg, pairs_file, tmp_path / loss_type)
    assert result.metrics["steps"] == 2 and (result.run_dir / "adapter" / "adapter_config.json").is_file()
    assert "implicit_reward_accuracy" in result.metrics["eval"]
    assert load_run(result.run_dir).config["loss_type"] == loss_type


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(loss_type="simpo,ipo"), "simpo"),
        (dict(loss_type="nonsense"), "loss_type"),
        (dict(algorithm="ppo2"), "algorithm"),
        (dict(algorithm="rloo"), "reward model"),
        (dict(lora_r=32), "lora_r"),
        (dict(precompute_ref_log_probs="sometimes"), "precompute_ref_log_probs"),
        (dict(beta=0.0), "beta"),
    ],
)
def test_policy_config_validation(tiny_policy, pairs_file, tmp_path, overrides, match):
    cfg = PolicyConfig(base_model=tiny_policy, **overrides)
    with pytest.raises(ConfigError, match=match):
        train_policy(cfg, pairs_file, tmp_path / "run")
    assert not list(tmp_path.iterdir())  # validated before any run directory is created


def test_rloo_batch_must_divide(pairs_file, tmp_path):
    cfg = PolicyConfig(algorithm="rloo", per_device_train_batch_size=6, num_generations=4)
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        train_policy(cfg, pairs_file, tmp_path / "run", reward_model_dir=tmp_path / "rm")
    assert not list(tmp_path.iterdir())


def test_tokenizer_mismatch(tiny_policy):
    from transformers import AutoModelForCausalLM

    from trainer.modeling import check_tokenizer, load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    big = load_tokenizer(tiny_policy)
    big.add_tokens([f"tok{i}" for i in range(5000)])
    with pytest.raises(TokenizerMismatchError, match="embedding table"):
        check_tokenizer(big, model, "test")


def test_generate_and_score(tiny_policy, reward_run):
    model, tok = load_policy(tiny_policy)
    out = generate(model, tok, ["What is the capital of France?"], max_new_tokens=8)
    assert isinstance(out[0], str)
    scorer = RewardScorer(reward_run[0].run_dir)
    good, bad = scorer.score(["Hi?", "Hi?"], ["Hello there Great!", "Hello there Bad."])
    assert good > bad
    assert Path(reward_run[0].run_dir, "COMPLETE").is_file()


class _Interrupt:
    """A progress callback that raises KeyboardInterrupt (Ctrl-C) half way through training."""

    def __init__(self, at_step: int):
        self.at_step, self.seen = at_step, 0

    def __call__(self, event) -> None:
        self.seen = event.step
        if event.step >= self.at_step:
            raise KeyboardInterrupt


def test_interrupted_run_is_not_complete(tiny_policy, pairs_file, heldout_rows, tmp_path):
    from trainer.errors import IncompleteRunError

    cfg = RewardConfig(backbone=tiny_policy, max_steps=6, **TINY)
    stop = _Interrupt(at_step=3)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(cfg, pairs_file, tmp_path / "rm", progress=stop, eval_rows=heldout_rows)
    assert stop.seen == 3 and not (tmp_path / "rm").exists()
    (partial,) = tmp_path.glob(".rm.partial-*")
    assert (partial / "config.json").is_file() and not (partial / "COMPLETE").exists()
    with pytest.raises(IncompleteRunError, match="not a complete run"):
        load_run(partial)
    with pytest.raises(IncompleteRunError):  # nor can it be used as a backbone / reward model
        RewardScorer(partial)


def test_length_column_for_grouped_dpo_batches():
    from datasets import Dataset

    from trainer.policy import _by_length, _text_length

    tokenized = Dataset.from_dict(
        {
            "prompt": ["a", "b"],
            "chosen": ["x", "y"],
            "rejected": ["z", "w"],
            "prompt_ids": [[1, 2, 3], [1]],
            "chosen_ids": [[4], [5, 6, 7, 8]],
            "rejected_ids": [[4, 5], [6]],
            "ref_chosen_logps": [-1.0, -2.0],
            "ref_rejected_logps": [-3.0, -4.0],
        }
    )
    out = _by_length(tokenized)
    assert out["length"] == [5, 5]  # prompt + the longer response, in tokens
    assert set(out.column_names) == {
        "prompt_ids",
        "chosen_ids",
        "rejected_ids",
        "ref_chosen_logps",
        "ref_rejected_logps",
        "length",
    }  # text columns dropped, precomputed reference kept
    short = {"prompt": "Hi", "chosen": "Yes.", "rejected": "No, not at all."}
    assert _text_length(short) < _text_length({**short, "prompt": "Hi there, how are you today?"})


def test_reference_precomputed_only_when_reused():
    from trainer.policy import precompute_reference

    assert not precompute_reference(PolicyConfig(num_train_epochs=1), 100)
    assert precompute_reference(PolicyConfig(num_train_epochs=3), 100)
    assert not precompute_reference(PolicyConfig(max_steps=10, per_device_train_batch_size=8), 100)
    assert precompute_reference(PolicyConfig(max_steps=20, per_device_train_batch_size=8), 100)
    assert precompute_reference(PolicyConfig(precompute_ref_log_probs="yes"), 100)
    assert not precompute_reference(PolicyConfig(precompute_ref_log_probs="no", num_train_epochs=3), 100)
