"""Build the local tiny policy: byte-level BPE tokenizer + small Llama, pretrained on the demo corpus.

    python -m trainer bootstrap --out var/trainer/bootstrap

The result loads with transformers and with vLLM (head_dim 64, float32, chat template set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .artifacts import RunWriter, trainer_home
from .chat import CHAT_TEMPLATE, END, PAD, SPECIAL_TOKENS
from .config import TrainingOptions, opt, trainer_kwargs
from .data import data_hash, load_demonstrations, to_conversational
from .errors import ConfigError
from .progress import HFProgressCallback, ProgressCallback
from .scoring import generate

DEMO_CORPUS = Path(__file__).parent / "data" / "demo_corpus.jsonl"
SAMPLE_PROMPTS = ["What is the capital of France?", "How do I make a cup of tea?", "Tell me a fun fact."]


@dataclass
class BootstrapConfig(TrainingOptions):
    corpus: str = opt(str(DEMO_CORPUS), "JSONL corpus with prompt/response (or prompt/completion) rows.")
    vocab_size: int = opt(4096, "Target BPE vocabulary size (byte-level BPE trained on the corpus).")
    hidden_size: int = opt(
        256, "Model width; hidden_size / num_attention_heads must be 64 for vLLM's CPU attention."
    )
    num_hidden_layers: int = opt(2, "Transformer layers.")
    num_attention_heads: int = opt(4, "Attention heads (head_dim = hidden_size / heads).")
    intermediate_size: int = opt(688, "MLP width.")
    max_position_embeddings: int = opt(512, "Maximum context length.")
    num_train_epochs: float = opt(12.0, "Pretraining epochs over the corpus.")
    learning_rate: float = opt(3e-3, "Peak learning rate.")
    per_device_train_batch_size: int = opt(16, "Batch size.")
    warmup_ratio: float = opt(0.05, "Warm-up fraction.")
    max_length: int = opt(160, "Maximum tokens per training example.")
    packing: bool = opt(False, "Pack several corpus items into each sequence (slower on CPU).")
    eval_fraction: float = opt(0.0, "Unused by bootstrap (the whole corpus is used).")
    logging_steps: int = opt(20, "Log every N steps.")


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=END, pad_token=PAD, additional_special_tokens=SPECIAL_TOKENS[2:]
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 512
    return fast


def build_model(cfg: BootstrapConfig, tok):
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if cfg.hidden_size % cfg.num_attention_heads or cfg.hidden_size // cfg.num_attention_heads != 64:
        raise ConfigError(
            "hidden_size / num_attention_heads must be 64 (vLLM's CPU attention needs head_dim 64)"
        )
    config = LlamaConfig(
        vocab_size=(len(tok) + 63) // 64 * 64,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        head_dim=64,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=64
    )
    return model


def bootstrap_policy(
    config: BootstrapConfig, out_dir: str | Path | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Build, pretrain and save the tiny policy. Returns the model directory (``<run>/model``)."""
    from datasets import Dataset
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir) if out_dir else trainer_home() / "bootstrap"
    rows = load_demonstrations(config.corpus)
    with RunWriter(out_dir, "bootstrap", config, data_hash(config.corpus)) as run:
        set_seed(config.seed)
        t0 = time.monotonic()
        texts = [f"{r['prompt']}\n{r['completion']}" for r in rows]
        tok = build_tokenizer([*texts, CHAT_TEMPLATE], config.vocab_size)
        model = build_model(config, tok)
        run.log("tokenizer: %d tokens; model: %.2fM parameters", len(tok), model.num_parameters() / 1e6)
        ds = Dataset.from_list([to_conversational(r) for r in rows])
        args = SFTConfig(
            **trainer_kwargs(config, run.dir),
            max_length=config.max_length,
            completion_only_loss=False,  # pretraining: learn prompts and answers alike
            packing=config.packing,
            dataset_num_proc=None,
        )
        sft = SFTTrainer(
            model=model,
            args=args,
            train_dataset=ds,
            processing_class=tok,
            callbacks=[HFProgressCallback(progress, "bootstrap")],
        )
        sft.remove_callback(PrinterCallback)
        out = sft.train()
        losses = [h["loss"] for h in sft.state.log_history if "loss" in h]
        model_dir = run.dir / "model"
        sft.model.save_pretrained(model_dir, safe_serialization=True)
        tok.save_pretrained(model_dir)
        samples = dict(zip(SAMPLE_PROMPTS, generate(sft.model, tok, SAMPLE_PROMPTS), strict=False))
        metrics = {
            "train_loss": out.training_loss,
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "steps": out.global_step,
            "num_parameters": model.num_parameters(),
            "vocab_size": len(tok),
            "wall_s": round(time.monotonic() - t0, 2),
            "samples": samples,
        }
        result = run.finish(metrics)
    return result.run_dir / "model"
