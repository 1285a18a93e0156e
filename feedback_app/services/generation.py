"""Response generation for comparison items and chat, on the configured backend.

The backend is built once per process from ``settings.GENERATION`` (see
``feedback_app/generation_settings.py``): ``vllm`` talks to the OpenAI-compatible servers at
``VLLM_URLS`` (loopback addresses only the app reaches), ``hf`` runs transformers in-process. When
the backend is down, generation raises ``GenerationUnavailable`` (HTTP 503) and nothing is written;
items generated earlier keep being served to labelers.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from feedback_app import models
from feedback_app.services.errors import InvalidInput, ServiceError
from trainer.generation.base import (
    BackendUnavailable,
    GenerationError,
    GenerationRequest,
    LimitExceeded,
    Limits,
    SamplingParams,
    UnknownModel,
)

log = logging.getLogger(__name__)
HEALTH_KEY = "generation:health"

_backend: Any = None
_backend_key: tuple | None = None
_backend_lock = threading.Lock()


class GenerationUnavailable(ServiceError):
    status_code = 503
    code = "generation_unavailable"


def generation_config() -> dict[str, Any]:
    from feedback_app.generation_settings import GENERATION

    return {**GENERATION, **getattr(settings, "GENERATION", {})}


def limits() -> Limits:
    cfg = generation_config()
    return Limits(
        max_prompt_chars=cfg["MAX_PROMPT_CHARS"],
        max_tokens=cfg["MAX_TOKENS"],
        max_n=cfg["MAX_N"],
        max_output_chars=cfg["MAX_OUTPUT_CHARS"],
    )


def build_backend(cfg: dict[str, Any] | None = None) -> Any:
    """A new backend instance from the configuration (``get_backend`` caches one per process)."""
    cfg = cfg or generation_config()
    kind = cfg["BACKEND"]
    if kind == "vllm":
        from feedback_app.services import registry
        from trainer.generation.vllm_backend import ClientConfig, RoutedVLLMGenerator

        client = ClientConfig(
            request_timeout_s=cfg["REQUEST_TIMEOUT_S"], admin_timeout_s=cfg["ADMIN_TIMEOUT_S"]
        )
        tokenizer = cfg["MODEL_DIR"] or None  # renders chat locally so batches go in one call
        # Each model name goes to the servers the registry records for it (blue/green), else VLLM_URLS.
        return RoutedVLLMGenerator(
            cfg["VLLM_URLS"],
            route=registry.route,
            serving=registry.serving_alias,
            limits=limits(),
            config=client,
            tokenizer=tokenizer,
        )
    if kind == "hf":
        from trainer.generation.hf_backend import HFGenerator

        if not cfg["MODEL_DIR"]:
            raise GenerationUnavailable(
                "GENERATION_BACKEND=hf needs VLLM_MODEL_DIR (the base model directory)"
            )
        return HFGenerator(cfg["MODEL_DIR"], base_name=cfg["BASE_MODEL_NAME"], limits=limits())
    raise GenerationUnavailable(f"unknown GENERATION_BACKEND {kind!r} (use 'vllm' or 'hf')")


def get_backend() -> Any:
    global _backend, _backend_key
    cfg = generation_config()
    key = (cfg["BACKEND"], tuple(cfg["VLLM_URLS"]), cfg["MODEL_DIR"], cfg["BASE_MODEL_NAME"])
    with _backend_lock:
        if _backend is None or _backend_key != key:
            _backend, _backend_key = build_backend(cfg), key
        return _backend


def set_backend(backend: Any) -> None:
    """Install a ready backend instance for this process (e.g. an HFGenerator already loaded)."""
    global _backend, _backend_key
    cfg = generation_config()
    with _backend_lock:
        _backend = backend
        _backend_key = (cfg["BACKEND"], tuple(cfg["VLLM_URLS"]), cfg["MODEL_DIR"], cfg["BASE_MODEL_NAME"])


def backend_status(*, refresh: bool = False) -> dict[str, Any]:
    """``{"ok", "backend", "replicas", "message"}``, cached briefly; used by the admin banner."""
    if not refresh:
        cached = cache.get(HEALTH_KEY)
        if cached is not None:
            return cached
    try:
        status = get_backend().health()
    except ServiceError as e:
        status = {"ok": False, "backend": generation_config()["BACKEND"], "replicas": [], "detail": e.message}
    down = [r["url"] for r in status.get("replicas", []) if not r.get("ok")]
    if status["ok"]:
        status["message"] = "Generation service is up."
    else:
        status["message"] = (
            "Generation service (vLLM) is unavailable"
            + (f" on {', '.join(down)}" if down else "")
            + ": new responses cannot be generated; existing items are still served."
        )
    cache.set(HEALTH_KEY, status, generation_config()["HEALTH_CACHE_S"])
    return status


def _run(backend: Any, requests: Sequence[GenerationRequest]) -> list:
    try:
        for request in requests:
            request.validate(limits())
        return backend.generate(requests)
    except BackendUnavailable as e:
        cache.delete(HEALTH_KEY)
        raise GenerationUnavailable(str(e)) from e
    except LimitExceeded as e:
        raise InvalidInput(str(e)) from e
    except UnknownModel as e:
        raise GenerationUnavailable(f"{e} (is the version loaded? promote it or load its adapter)") from e
    except GenerationError as e:
        raise GenerationUnavailable(str(e)) from e


def default_versions() -> list[models.ModelVersion]:
    """The serving version and the one it replaced (its rollback target), when there is one."""
    from feedback_app.services.registry import previous_version, serving_version

    current = serving_version()
    if current is None:
        raise InvalidInput("no model version is serving: promote one first")
    previous = previous_version(current)
    return [current, previous] if previous else [current]


def generate_comparison_items(
    *,
    project: models.Project,
    prompts: Sequence[models.Prompt],
    versions: Sequence[models.ModelVersion] | None = None,
    n_per_version: int = 1,
    params: SamplingParams | None = None,
    seeds: Sequence[int] | None = None,
    backend: Any = None,
) -> list[models.ComparisonItem]:
    """For each prompt, ``n_per_version`` responses from each version, stored as one comparison item.

    ``seeds`` (one per version) make sampling reproducible, e.g. the same version twice with two
    seeds. All generation happens before anything is written: on failure nothing is stored.
    """
    from feedback_app.services.registry import model_name

    params = params or SamplingParams(temperature=0.8, max_tokens=128)
    versions = list(versions) if versions else default_versions()
    if seeds is not None and len(seeds) != len(versions):
        raise InvalidInput("give one seed per version")
    n_total = len(versions) * n_per_version
    if not 2 <= n_total <= 9:
        raise InvalidInput(
            f"an item needs 2..9 responses; {len(versions)} versions x {n_per_version} = {n_total}"
        )
    if any(p.project_id != project.pk for p in prompts):
        raise InvalidInput("every prompt must belong to the project")
    backend = backend or get_backend()
    requests, plan = [], []
    for prompt in prompts:
        for j, version in enumerate(versions):
            seed = seeds[j] if seeds is not None else params.seed
            p = SamplingParams(**{**params.to_dict(), "n": n_per_version, "seed": seed, "stop": params.stop})
            requests.append(GenerationRequest(model=model_name(version), messages=prompt.messages, params=p))
            plan.append((prompt, version, p))
    results = _run(backend, requests)
    backend_kind = generation_config()["BACKEND"]
    items = []
    with transaction.atomic():
        for prompt in prompts:
            responses = []
            for (p_prompt, version, p), result in zip(plan, results, strict=True):
                if p_prompt.pk != prompt.pk:
                    continue
                for k, text in enumerate(result.texts):
                    gp = {
                        **p.to_dict(),
                        "n": 1,
                        "sample_index": k,
                        "model": result.model,
                        "backend": backend_kind,
                        "finish_reason": result.finish_reasons[k] if k < len(result.finish_reasons) else "",
                        "completion_tokens": (
                            result.completion_tokens[k] if k < len(result.completion_tokens) else None
                        ),
                    }
                    responses.append(
                        models.Response(
                            prompt=prompt,
                            model_version=version,
                            text=storable_text(text),
                            generation_params=gp,
                        )
                    )
            models.Response.objects.bulk_create(responses)
            random.Random(prompt.pk).shuffle(responses)  # no position bias towards a version
            item = models.ComparisonItem.objects.create(
                project=project, prompt=prompt, judgements_wanted=project.judgements_per_item
            )
            models.ItemResponse.objects.bulk_create(
                [models.ItemResponse(item=item, response=r, position=i) for i, r in enumerate(responses)]
            )
            items.append(item)
    return items


def storable_text(text: str) -> str:
    """Model output as PostgreSQL text can hold it: without NUL characters (a tiny model emits them)."""
    return text.replace("\x00", "")


def chat_stream(
    messages: list[dict[str, str]], params: SamplingParams | None = None
) -> tuple[str, Iterator[str]]:
    """Stream an answer from the serving version. Returns the model name it runs on and the pieces.

    The alias is resolved once, here: the whole answer comes from that version even if a promotion
    happens while it streams.
    """
    from feedback_app.services.registry import serving_alias

    model = serving_alias()
    request = GenerationRequest(
        model=model, messages=messages, params=params or SamplingParams(max_tokens=256)
    )
    try:
        request.validate(limits())
    except LimitExceeded as e:
        raise InvalidInput(str(e)) from e
    backend = get_backend()

    def pieces() -> Iterator[str]:
        try:
            yield from backend.stream(request)
        except BackendUnavailable as e:
            cache.delete(HEALTH_KEY)
            raise GenerationUnavailable(str(e)) from e

    return model, pieces()


def chat_complete(messages: list[dict[str, str]], params: SamplingParams | None = None) -> dict[str, Any]:
    from feedback_app.services.registry import serving_alias

    request = GenerationRequest(model=serving_alias(), messages=messages, params=params or SamplingParams())
    result = _run(get_backend(), [request])[0]
    return {"model": result.model, "texts": result.texts, "finish_reasons": result.finish_reasons}
