"""Settings for response generation and the policy version registry (imported into settings.py).

from feedback_app.generation_settings import *  # noqa: F403
"""

from __future__ import annotations

from feedback_app.env import env_float, env_int, env_list, env_str

GENERATION = {
    # "vllm": OpenAI-compatible vLLM servers at VLLM_URLS (default); "hf": in-process transformers.
    "BACKEND": env_str("GENERATION_BACKEND", "vllm"),
    # Comma-separated replica URLs. They must be loopback/private addresses only the app can reach.
    "VLLM_URLS": env_list("VLLM_URLS", ["http://127.0.0.1:8001"]),
    # Base weights the servers run (and the hf backend loads); also the default base_model of versions.
    "MODEL_DIR": env_str("VLLM_MODEL_DIR", ""),
    # Model name of the plain base model (vLLM --served-model-name).
    "BASE_MODEL_NAME": env_str("VLLM_SERVED_MODEL_NAME", "base"),
    # vLLM --max-loras: adapters kept loaded per replica (serving + rollback target + candidates).
    "MAX_LORAS": env_int("VLLM_MAX_LORAS", 4),
    "MAX_LORA_RANK": env_int("VLLM_MAX_LORA_RANK", 16),
    "REQUEST_TIMEOUT_S": env_float("GENERATION_REQUEST_TIMEOUT_S", 300.0),
    "ADMIN_TIMEOUT_S": env_float("GENERATION_ADMIN_TIMEOUT_S", 60.0),
    # Seconds the serving alias stays in the shared cache (promote and rollback rewrite it at once).
    "ALIAS_CACHE_S": env_float("GENERATION_ALIAS_CACHE_S", 60.0),
    "HEALTH_CACHE_S": env_float("GENERATION_HEALTH_CACHE_S", 5.0),
    # Size limits (characters / tokens) applied before any request reaches a backend.
    "MAX_PROMPT_CHARS": env_int("GENERATION_MAX_PROMPT_CHARS", 8000),
    "MAX_OUTPUT_CHARS": env_int("GENERATION_MAX_OUTPUT_CHARS", 20000),
    "MAX_TOKENS": env_int("GENERATION_MAX_TOKENS", 512),
    "MAX_N": env_int("GENERATION_MAX_N", 8),
    # Smoke test on promote: a short temperature-0 completion on every replica.
    "SMOKE_PROMPT": env_str("GENERATION_SMOKE_PROMPT", "Say hello."),
    "SMOKE_MAX_TOKENS": env_int("GENERATION_SMOKE_MAX_TOKENS", 2),
    # Full-weight (blue/green) versions: where managed vLLM servers write their logs.
    "VLLM_LOG_DIR": env_str("VLLM_LOG_DIR", ""),
    "VLLM_STARTUP_TIMEOUT_S": env_float("VLLM_STARTUP_TIMEOUT_S", 300.0),
    "DRAIN_TIMEOUT_S": env_float("GENERATION_DRAIN_TIMEOUT_S", 60.0),
}
