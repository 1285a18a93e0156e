"""A tiny randomly initialised policy and random LoRA adapters, for tests, benchmarks and smoke checks.

The model has the bootstrap architecture (Llama, head_dim 64, byte-level BPE tokenizer, chat
template) but no pretraining, so it builds in seconds. Adapters get a non-zero ``B`` so that each
one changes temperature-0 outputs.
"""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_policy(out_dir: str | Path, *, seed: int = 0, num_hidden_layers: int = 2) -> Path:
    """Write a random tiny Llama and its tokenizer to ``out_dir``; returns ``out_dir``."""
    import torch

    from trainer.bootstrap import DEMO_CORPUS, BootstrapConfig, build_model, build_tokenizer
    from trainer.chat import CHAT_TEMPLATE

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    rows = [json.loads(line) for line in DEMO_CORPUS.read_text().splitlines() if line.strip()]
    texts = [f"{r['prompt']}\n{r.get('response') or r.get('completion')}" for r in rows]
    cfg = BootstrapConfig(num_hidden_layers=num_hidden_layers, vocab_size=1024)
    tok = build_tokenizer([*texts, CHAT_TEMPLATE], cfg.vocab_size)
    torch.manual_seed(seed)
    model = build_model(cfg, tok)
    # Larger-than-default init so that different adapters/seeds give visibly different greedy text.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def make_random_lora(
    base_dir: str | Path, out_dir: str | Path, *, seed: int, r: int = 8, scale: float = 0.5
) -> Path:
    """Save a peft LoRA adapter for ``base_dir`` with random A and B (B != 0, so it has an effect)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer.modeling import lora_config

    out = Path(out_dir)
    if (out / "adapter_config.json").is_file():
        return out
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_model = get_peft_model(model, lora_config(r, 2 * r, 0.0))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    return out
