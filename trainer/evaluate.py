"""Candidate versus current version: win rate under the reward model, held-out pairs, KL; a gate.

python -m trainer evaluate --candidate RUN/adapter --reference SERVING/adapter --reward-model RM_RUN ...
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import opt
from .data import Text, load_preferences, load_prompts
from .scoring import RewardScorer, generate, load_policy, response_logps


@dataclass
class GateConfig:
    min_win_rate: float = opt(
        0.5, "Candidate must win at least this fraction of held-out prompts under the reward model."
    )
    min_pair_accuracy: float = opt(
        0.5, "Minimum implicit-reward accuracy of the candidate on held-out pairs."
    )
    max_kl: float = opt(10.0, "Maximum estimated KL(candidate || reference) in nats per response.")
    beta: float = opt(0.1, "Beta used to turn log-prob ratios into implicit rewards.")
    max_new_tokens: int = opt(32, "Tokens generated per held-out prompt.")
    max_prompts: int = opt(32, "Held-out prompts used (the first N).")
    do_sample: bool = opt(False, "Sample responses for the win rate (greedy by default); KL always samples.")
    seed: int = opt(0, "Sampling seed.")
    device: str = opt("auto", "'auto', 'cpu' or 'cuda'.")


@dataclass
class GateReport:
    decision: str  # "pass" | "fail"
    reasons: list[str]
    metrics: dict[str, Any]
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_metrics(policy, reference, tok, rows: list[dict], beta: float) -> dict[str, float]:
    """Implicit-reward accuracy/margin (DPO's reward: beta * log pi/ref) and log-likelihood accuracy."""
    if not rows:
        return {}
    prompts = [r["prompt"] for r in rows]
    chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    pc, pr = response_logps(policy, tok, prompts, chosen), response_logps(policy, tok, prompts, rejected)
    rc, rr = (
        response_logps(reference, tok, prompts, chosen),
        response_logps(reference, tok, prompts, rejected),
    )
    margins = [beta * ((a - b) - (c - d)) for a, b, c, d in zip(pc, pr, rc, rr, strict=False)]
    return {
        "implicit_reward_accuracy": sum(m > 0 for m in margins) / len(margins),
        "implicit_reward_margin": statistics.fmean(margins),
        "implicit_reward_chosen": statistics.fmean(beta * (a - c) for a, c in zip(pc, rc, strict=False)),
        "implicit_reward_rejected": statistics.fmean(beta * (b - d) for b, d in zip(pr, rr, strict=False)),
        "logp_accuracy_reference": sum(c > d for c, d in zip(rc, rr, strict=False)) / len(rows),
        "logp_accuracy_policy": sum(a > b for a, b in zip(pc, pr, strict=False)) / len(rows),
        "n_pairs": len(rows),
    }


def sample_metrics(
    policy,
    reference,
    tok,
    prompts: list[Text],
    scorer: RewardScorer | None,
    max_new_tokens: int,
    seed: int,
    do_sample: bool = False,
) -> dict[str, Any]:
    """KL estimate on the policy's samples; reward-model scores and win rate against the reference."""
    if not prompts:
        return {}
    samples = generate(policy, tok, prompts, max_new_tokens, do_sample=True, seed=seed)
    kl = [
        a - b
        for a, b in zip(
            response_logps(policy, tok, prompts, samples),
            response_logps(reference, tok, prompts, samples),
            strict=True,
        )
    ]
    out: dict[str, Any] = {"kl_to_reference": statistics.fmean(kl), "n_prompts": len(prompts)}
    cand = samples if do_sample else generate(policy, tok, prompts, max_new_tokens, seed=seed)
    ref = generate(reference, tok, prompts, max_new_tokens, do_sample=do_sample, seed=seed)
    out["examples"] = [
        {"prompt": p, "reference": r, "candidate": c}
        for p, r, c in list(zip(prompts, ref, cand, strict=True))[:3]
    ]
    if scorer is not None:
        sc, sr = scorer.score(prompts, cand), scorer.score(prompts, ref)
        out["reward_candidate_mean"] = statistics.fmean(sc)
        out["reward_reference_mean"] = statistics.fmean(sr)
        wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(sc, sr, strict=True)]
        out["win_rate"] = statistics.fmean(wins)
    return out


def evaluate_candidate(
    config: GateConfig,
    candidate_adapter: str | Path,
    reference_adapter: str | Path | None,
    base_model: str,
    reward_model_dir: str | Path | None,
    heldout_pairs_path: str | Path | None,
    heldout_prompts: list[Text] | str | Path | None,
) -> GateReport:
    """Compare a candidate adapter with the serving version and decide whether to promote it."""
    candidate, tok = load_policy(base_model, candidate_adapter, config.device)
    reference, _ = load_policy(base_model, reference_adapter, config.device)
    scorer = RewardScorer(reward_model_dir, config.device) if reward_model_dir else None
    pairs = load_preferences(heldout_pairs_path) if heldout_pairs_path else []
    if isinstance(heldout_prompts, (str, Path)):
        prompts = load_prompts(heldout_prompts)
    else:
        prompts = list(heldout_prompts or [])
    if not prompts:
        prompts = [r["prompt"] for r in pairs]
    prompts = prompts[: config.max_prompts]
    metrics: dict[str, Any] = {"pairs": pair_metrics(candidate, reference, tok, pairs, config.beta)}
    metrics["samples"] = sample_metrics(
        candidate, reference, tok, prompts, scorer, config.max_new_tokens, config.seed, config.do_sample
    )
    if scorer is not None and pairs:
        from .scoring import pairwise_metrics

        metrics["reward_model_pairs"] = pairwise_metrics(scorer, pairs)
    return decide(config, metrics)


def decide(config: GateConfig, metrics: dict[str, Any]) -> GateReport:
    thresholds = {
        "min_win_rate": config.min_win_rate,
        "min_pair_accuracy": config.min_pair_accuracy,
        "max_kl": config.max_kl,
    }
    reasons, ok = [], True
    win = metrics.get("samples", {}).get("win_rate")
    if win is None:
        reasons.append("no reward model or prompts: win rate not measured")
    elif win < config.min_win_rate:
        ok = False
        reasons.append(f"win rate {win:.3f} < {config.min_win_rate}")
    else:
        reasons.append(f"win rate {win:.3f} >= {config.min_win_rate}")
    acc = metrics.get("pairs", {}).get("implicit_reward_accuracy")
    if acc is None:
        reasons.append("no held-out pairs: pair accuracy not measured")
    elif acc < config.min_pair_accuracy:
        ok = False
        reasons.append(f"held-out implicit-reward accuracy {acc:.3f} < {config.min_pair_accuracy}")
    else:
        reasons.append(f"held-out implicit-reward accuracy {acc:.3f} >= {config.min_pair_accuracy}")
    kl = metrics.get("samples", {}).get("kl_to_reference")
    if kl is not None:
        if kl > config.max_kl:
            ok = False
            reasons.append(f"KL to reference {kl:.3f} > {config.max_kl}")
        else:
            reasons.append(f"KL to reference {kl:.3f} <= {config.max_kl}")
    if win is None and acc is None:
        ok = False
        reasons.append("nothing was measured: give a reward model with prompts, or held-out pairs")
    return GateReport("pass" if ok else "fail", reasons, metrics, thresholds)
