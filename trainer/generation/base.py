"""The generation interface shared by the vLLM and transformers backends.

A ``GenerationRequest`` names the model (base model name or LoRA adapter name) it must run on, so a
request that started on one policy version finishes on it even if the serving alias changes meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from trainer.errors import TrainerError

Messages = list[dict[str, str]]


class GenerationError(TrainerError):
    """A generation request that cannot be served."""


class BackendUnavailable(GenerationError):
    """No replica of the generation backend answered (down, starting or unreachable)."""


class UnknownModel(GenerationError):
    """The request names a model/adapter the backend has not loaded."""


class LimitExceeded(GenerationError, ValueError):
    """A prompt or a sampling parameter is over the configured size limits."""


@dataclass(frozen=True)
class Limits:
    """Size limits applied to every request before it reaches a backend."""

    max_prompt_chars: int = 20_000
    max_messages: int = 64
    max_tokens: int = 1024
    max_n: int = 16
    max_output_chars: int = 50_000


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def validate(self, limits: Limits) -> None:
        if not 1 <= self.n <= limits.max_n:
            raise LimitExceeded(f"n must be in 1..{limits.max_n}, got {self.n}")
        if not 1 <= self.max_tokens <= limits.max_tokens:
            raise LimitExceeded(f"max_tokens must be in 1..{limits.max_tokens}, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 5.0:
            raise LimitExceeded(f"temperature must be in 0..5, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise LimitExceeded(f"top_p must be in (0, 1], got {self.top_p}")
        if len(self.stop) > 8 or any(len(s) > 64 for s in self.stop):
            raise LimitExceeded("at most 8 stop strings of at most 64 characters")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingParams:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "stop" in known:
            known["stop"] = tuple(known["stop"] or ())
        return cls(**known)


@dataclass(frozen=True)
class GenerationRequest:
    """Chat ``messages`` (rendered with the model's chat template) or raw ``prompt`` text."""

    model: str
    messages: Messages | None = None
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)

    def validate(self, limits: Limits) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise LimitExceeded("give exactly one of messages or prompt")
        if not self.model:
            raise UnknownModel("the request names no model")
        if self.messages is not None:
            if not self.messages or len(self.messages) > limits.max_messages:
                raise LimitExceeded(f"messages must hold 1..{limits.max_messages} entries")
            for m in self.messages:
                if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
                    raise LimitExceeded("each message needs a role and a string content")
        if self.prompt_chars() > limits.max_prompt_chars:
            raise LimitExceeded(
                f"prompt has {self.prompt_chars()} characters, the limit is {limits.max_prompt_chars}"
            )
        self.params.validate(limits)

    def prompt_chars(self) -> int:
        if self.prompt is not None:
            return len(self.prompt)
        return sum(len(m.get("content", "")) for m in self.messages or [])


@dataclass
class GenerationResult:
    texts: list[str]
    model: str
    finish_reasons: list[str]
    prompt_tokens: int = 0
    completion_tokens: list[int] = field(default_factory=list)

    @property
    def total_completion_tokens(self) -> int:
        return sum(self.completion_tokens)


def clip_output(text: str, limits: Limits) -> str:
    return text[: limits.max_output_chars]


@runtime_checkable
class Generator(Protocol):
    """What the web app and the benchmarks use; both backends implement it."""

    limits: Limits

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...

    def stream(self, request: GenerationRequest) -> Iterator[str]: ...

    def health(self) -> dict[str, Any]: ...


@runtime_checkable
class AdapterHost(Protocol):
    """One place adapters live (a vLLM replica, or the in-process model): the registry loads into each."""

    name: str

    def load_adapter(self, lora_name: str, lora_path: str) -> None: ...

    def unload_adapter(self, lora_name: str) -> None: ...

    def loaded_adapters(self) -> list[str]: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...
