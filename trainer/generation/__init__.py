"""Generation for the feedback loop: one interface (``base.Generator``), two backends.

``vllm_backend.VLLMGenerator`` talks to vLLM's OpenAI-compatible servers (default);
``hf_backend.HFGenerator`` runs transformers in-process. ``vllm_server.VLLMServer`` starts and
supervises a local vLLM server. No Django here.
"""

from .base import (
    BackendUnavailable,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    Generator,
    LimitExceeded,
    Limits,
    SamplingParams,
    UnknownModel,
)

__all__ = [
    "BackendUnavailable",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "LimitExceeded",
    "Limits",
    "SamplingParams",
    "UnknownModel",
]
