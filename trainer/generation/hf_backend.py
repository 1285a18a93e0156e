"""In-process generation with transformers: a base model plus named peft LoRA adapters.

Used by the unit tests and on machines where vLLM cannot run. Requests that share a model and
sampling parameters are batched (left padding); a lock serialises use of the model, because the
active adapter is global state of the peft model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from .base import (
    GenerationRequest,
    GenerationResult,
    LimitExceeded,
    Limits,
    SamplingParams,
    UnknownModel,
    clip_output,
)


class HFGenerator:
    """Implements ``Generator`` and ``AdapterHost`` (it is its own single replica)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        base_name: str = "base",
        adapters: dict[str, str] | None = None,
        limits: Limits | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"hf:{model_dir}"
        self.base_name = base_name
        self.limits = limits or Limits()
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.tok.padding_side = "left"
        self.base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
        self.base.eval()
        self.model: Any = self.base  # becomes a PeftModel once an adapter is loaded
        self._adapters: dict[str, str] = {}
        for name, path in (adapters or {}).items():
            self.load_adapter(name, path)

    # -- adapters -------------------------------------------------------------------------------
    def load_adapter(self, lora_name: str, lora_path: str) -> None:
        from peft import PeftModel

        if not (Path(lora_path) / "adapter_config.json").is_file():
            raise UnknownModel(f"no LoRA adapter (adapter_config.json) in {lora_path}")
        with self._lock:
            if lora_name in self._adapters or lora_name == self.base_name:
                if self._adapters.get(lora_name) == lora_path:
                    return
                raise UnknownModel(f"a model named {lora_name!r} is already loaded")
            if self.model is self.base:
                self.model = PeftModel.from_pretrained(self.base, lora_path, adapter_name=lora_name)
            else:
                self.model.load_adapter(lora_path, adapter_name=lora_name)
            self.model.eval()
            self._adapters[lora_name] = lora_path

    def unload_adapter(self, lora_name: str) -> None:
        with self._lock:
            if lora_name not in self._adapters:
                raise UnknownModel(f"adapter {lora_name!r} is not loaded")
            del self._adapters[lora_name]
            if self._adapters:
                if self.model.active_adapter == lora_name:
                    self.model.set_adapter(next(iter(self._adapters)))
                self.model.delete_adapter(lora_name)
            else:
                self.model = self.model.unload()  # back to the plain base model
                self.base = self.model

    def loaded_adapters(self) -> list[str]:
        return list(self._adapters)

    def models(self) -> list[str]:
        return [self.base_name, *self._adapters]

    @property
    def replicas(self) -> list[HFGenerator]:
        return [self]

    def health(self) -> dict[str, Any]:
        return {"ok": True, "backend": "hf", "replicas": [{"url": self.name, "ok": True}]}

    # -- generation ---------------------------------------------------------------------------
    def _render(self, req: GenerationRequest) -> str:
        if req.messages is not None:
            return self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
        return req.prompt or ""

    def _gen_kwargs(self, params: SamplingParams, streamer: Any = None) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            # greedy samples are identical: generate one, copy it (transformers refuses n > 1 greedy)
            "num_return_sequences": params.n if params.temperature > 0 else 1,
            "pad_token_id": self.tok.pad_token_id,
            "eos_token_id": self.tok.eos_token_id,
            "use_cache": True,  # trained checkpoints may be saved with use_cache=False
        }
        if params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kw["stop_strings"] = list(params.stop)
            kw["tokenizer"] = self.tok
        if streamer is not None:
            kw["streamer"] = streamer
        return kw

    def _select(self, model_name: str):
        """Context manager that runs the model with ``model_name``'s adapter (or none)."""
        import contextlib

        if model_name == self.base_name:
            if self.model is self.base:
                return contextlib.nullcontext()
            return self.model.disable_adapter()
        if model_name not in self._adapters:
            raise UnknownModel(f"model {model_name!r} is not loaded (have: {', '.join(self.models())})")
        self.model.set_adapter(model_name)
        return contextlib.nullcontext()

    def _check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        context = getattr(self.base.config, "max_position_embeddings", None)
        if context and prompt_tokens + max_tokens > context:
            raise LimitExceeded(
                f"prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the model's "
                f"context of {context} tokens"
            )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        for req in requests:
            req.validate(self.limits)
        results: list[GenerationResult | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: (requests[i].model, repr(requests[i].params)))
        for _, group in groupby(order, key=lambda i: (requests[i].model, repr(requests[i].params))):
            idx = list(group)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                for i, res in zip(chunk, self._generate_batch([requests[i] for i in chunk]), strict=True):
                    results[i] = res
        return [r for r in results if r is not None]

    def _generate_batch(self, reqs: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        params, model_name = reqs[0].params, reqs[0].model
        texts = [self._render(r) for r in reqs]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        self._check_context(enc["input_ids"].shape[1], params.max_tokens)
        enc = enc.to(self.base.device)
        with self._lock, torch.no_grad(), self._select(model_name):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(**enc, **self._gen_kwargs(params))
        new = out[:, enc["input_ids"].shape[1] :]
        if params.temperature == 0 and params.n > 1:
            new = new.repeat_interleave(params.n, dim=0)
        results = []
        for j, req in enumerate(reqs):
            rows = new[j * params.n : (j + 1) * params.n]
            texts_j, reasons, counts = [], [], []
            for row in rows:
                ids = row.tolist()
                if self.tok.eos_token_id in ids:
                    ids = ids[: ids.index(self.tok.eos_token_id)]
                    reasons.append("stop")
                else:
                    ids = [t for t in ids if t != self.tok.pad_token_id]
                    reasons.append("length" if len(ids) >= params.max_tokens else "stop")
                text = self.tok.decode(ids, skip_special_tokens=True)
                for s in params.stop:
                    if s in text:
                        text = text[: text.index(s)]
                texts_j.append(clip_output(text, self.limits))
                counts.append(len(ids))
            prompt_tokens = int(enc["attention_mask"][j].sum())
            results.append(GenerationResult(texts_j, req.model, reasons, prompt_tokens, counts))
        return results

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        request.validate(self.limits)
        params = SamplingParams(**{**request.params.to_dict(), "n": 1, "stop": request.params.stop})
        enc = self.tok([self._render(request)], return_tensors="pt", add_special_tokens=False)
        self._check_context(enc["input_ids"].shape[1], params.max_tokens)
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True, timeout=300)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.no_grad(), self._select(request.model):
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    self.model.generate(**enc.to(self.base.device), **self._gen_kwargs(params, streamer))
            except BaseException as e:  # surfaced to the consumer below
                errors.append(e)
                streamer.end()

        if request.model != self.base_name and request.model not in self._adapters:
            raise UnknownModel(f"model {request.model!r} is not loaded")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        produced = 0
        for piece in streamer:
            if piece:
                piece = piece[: max(0, self.limits.max_output_chars - produced)]
                produced += len(piece)
                if piece:
                    yield piece
        thread.join()
        if errors:
            raise errors[0]
