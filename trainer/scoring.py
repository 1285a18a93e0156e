"""Scoring helpers used for evaluation metrics: reward-model scores and sequence log-probs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .artifacts import resolve_weights
from .chat import encode_pairs, render_prompt
from .data import Text, as_messages, message_text
from .errors import MissingFileError
from .modeling import load_causal_lm, load_sequence_classifier


def _pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


class RewardScorer:
    """Scores (prompt, response) pairs with a trained reward model (a run dir or its ``model/``)."""

    def __init__(self, path: str | Path, device: str = "auto", max_length: int | None = None):
        path = Path(path)
        model_dir = resolve_weights(path, "model")
        if not (model_dir / "config.json").is_file():
            raise MissingFileError(f"no reward model weights in {path}")
        self.model, self.tok = load_sequence_classifier(str(model_dir), device)
        self.model.eval()
        run_cfg = model_dir.parent / "config.json"
        if max_length is None and run_cfg.is_file():
            max_length = json.loads(run_cfg.read_text()).get("config", {}).get("max_length")
        self.max_length = max_length or 256
        self.layout = getattr(self.model.config, "reward_input_layout", "prompt_first")

    @torch.no_grad()
    def score(self, prompts: list[Text], responses: list[Text], batch_size: int = 16) -> list[float]:
        out: list[float] = []
        device = next(self.model.parameters()).device
        for i in range(0, len(prompts), batch_size):
            seqs = encode_pairs(
                self.tok,
                prompts[i : i + batch_size],
                responses[i : i + batch_size],
                self.max_length,
                self.layout,
            )
            ids, mask = _pad(seqs, self.tok.pad_token_id, device)
            out += self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
        return out


def pairwise_metrics(scorer: RewardScorer, rows: list[dict]) -> dict[str, float]:
    """Held-out pairwise accuracy (ties count half) and reward statistics."""
    if not rows:
        return {}
    prompts = [r["prompt"] for r in rows]
    sc = torch.tensor(scorer.score(prompts, [r["chosen"] for r in rows]))
    sr = torch.tensor(scorer.score(prompts, [r["rejected"] for r in rows]))
    return {
        "accuracy": ((sc > sr).float() + 0.5 * (sc == sr).float()).mean().item(),
        "margin_mean": (sc - sr).mean().item(),
        "reward_chosen_mean": sc.mean().item(),
        "reward_rejected_mean": sr.mean().item(),
        "reward_mean": torch.cat([sc, sr]).mean().item(),
        "reward_std": torch.cat([sc, sr]).std().item() if len(rows) > 1 else 0.0,
        "n_pairs": len(rows),
    }


def load_policy(base_model: str, adapter: str | Path | None = None, device: str = "auto"):
    """The base causal LM, with a LoRA adapter applied (a run dir or an adapter dir) when given."""
    model, tok = load_causal_lm(base_model, device)
    if adapter:
        from peft import PeftModel

        adapter_dir = resolve_weights(adapter, "adapter")
        if not (adapter_dir / "adapter_config.json").is_file():
            raise MissingFileError(f"no LoRA adapter (adapter_config.json) in {adapter}")
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, tok


@torch.no_grad()
def response_logps(
    model, tok, prompts: list[Text], responses: list[Text], batch_size: int = 16
) -> list[float]:
    """Sum of log-probabilities of each response's tokens given its prompt (chat template applied)."""
    device = next(model.parameters()).device
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        seqs, starts = [], []
        for p, r in zip(prompts[i : i + batch_size], responses[i : i + batch_size], strict=False):
            p_text = render_prompt(tok, p)
            if getattr(tok, "chat_template", None):
                full = tok.apply_chat_template(
                    as_messages(p, "user") + as_messages(r, "assistant"), tokenize=False
                )
                r_text = full[len(p_text) :]
            else:
                r_text = message_text(r) + (tok.eos_token or "")
            p_ids = tok(p_text, add_special_tokens=False)["input_ids"]
            r_ids = tok(r_text, add_special_tokens=False)["input_ids"]
            seqs.append(p_ids + r_ids)
            starts.append(len(p_ids))
        ids, mask = _pad(seqs, tok.pad_token_id, device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        for j, s in enumerate(starts):
            out.append(logp[j, s - 1 : len(seqs[j]) - 1].sum().item())
    return out


def generate(
    model,
    tok,
    prompts: list[Text],
    max_new_tokens: int = 48,
    do_sample: bool = False,
    seed: int | None = None,
) -> list[str]:
    """Greedy (or sampled) completions for a few prompts; used for sanity samples and evaluation."""
    device = next(model.parameters()).device
    tok.padding_side = "left"
    texts = [render_prompt(tok, p) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            top_k=0 if do_sample else None,
            temperature=1.0 if do_sample else None,
        )
    tok.padding_side = "right"
    return tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
