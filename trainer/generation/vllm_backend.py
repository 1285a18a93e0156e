"""Client for one or more vLLM OpenAI-compatible servers (replicas).

Generation requests go to a healthy replica (round robin, the next one on a connection error).
Adapter loading is per replica (``VLLMReplica``): the registry loads on every replica or on none.
Only the app process talks to these servers; their admin endpoints are never exposed to users.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from .base import (
    BackendUnavailable,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    Limits,
    UnknownModel,
    clip_output,
)


@dataclass(frozen=True)
class ClientConfig:
    connect_timeout_s: float = 2.0
    request_timeout_s: float = 300.0
    admin_timeout_s: float = 60.0
    health_timeout_s: float = 2.0
    max_connections: int = 64


_TOKENIZER_LOCK = threading.Lock()


def _payload(req: GenerationRequest, stream: bool = False) -> tuple[str, dict[str, Any]]:
    p = req.params
    body: dict[str, Any] = {
        "model": req.model,
        # vLLM refuses n > 1 with greedy sampling; greedy samples are identical, generate_one copies.
        "n": 1 if p.temperature == 0 else p.n,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
    }
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop)
    if stream:
        body["stream"] = True
    if req.messages is not None:
        body["messages"] = req.messages
        return "/v1/chat/completions", body
    body["prompt"] = req.prompt
    return "/v1/completions", body


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:500]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:500]
    return str(err)[:500]


class VLLMReplica:
    """One vLLM server. Implements ``AdapterHost``.

    With ``tokenizer`` (the served model's directory) the chat template is rendered here and a
    batch of requests that share model and sampling parameters goes to ``/v1/completions`` as one
    call with a list of prompts: about 3x the throughput of one HTTP request per prompt on CPU.
    """

    def __init__(
        self,
        url: str,
        *,
        limits: Limits | None = None,
        config: ClientConfig | None = None,
        tokenizer: str | None = None,
    ):
        self.url = url.rstrip("/")
        self.tokenizer_path = tokenizer
        self._tok: Any = None
        self.name = self.url
        self.limits = limits or Limits()
        self.config = config or ClientConfig()
        timeout = httpx.Timeout(self.config.request_timeout_s, connect=self.config.connect_timeout_s)
        limits_ = httpx.Limits(
            max_connections=self.config.max_connections,
            max_keepalive_connections=self.config.max_connections,
        )
        self._http = httpx.Client(base_url=self.url, timeout=timeout, limits=limits_)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> httpx.Response:
        try:
            return self._http.post(path, json=body, timeout=timeout or httpx.USE_CLIENT_DEFAULT)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise BackendUnavailable(f"vLLM replica {self.url} is unreachable: {e}") from e
        except httpx.TimeoutException as e:
            raise BackendUnavailable(f"vLLM replica {self.url} timed out: {e}") from e

    def _check(self, resp: httpx.Response, what: str, model: str = "") -> None:
        if resp.status_code < 400:
            return
        message = _error_message(resp)
        if resp.status_code == 404 and model:
            raise UnknownModel(f"{what} on {self.url}: model {model!r} not found ({message})")
        if resp.status_code >= 500 or resp.status_code == 503:
            raise BackendUnavailable(f"{what} on {self.url} failed ({resp.status_code}): {message}")
        raise GenerationError(f"{what} on {self.url} failed ({resp.status_code}): {message}")

    # -- health and models --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        try:
            resp = self._http.get("/health", timeout=self.config.health_timeout_s)
            ok = resp.status_code == 200
            return {"url": self.url, "ok": ok, "detail": "" if ok else f"HTTP {resp.status_code}"}
        except httpx.HTTPError as e:
            return {"url": self.url, "ok": False, "detail": f"{type(e).__name__}: {e}"}

    def _model_cards(self) -> list[dict[str, Any]]:
        try:
            resp = self._http.get("/v1/models", timeout=self.config.health_timeout_s)
        except httpx.HTTPError as e:
            raise BackendUnavailable(f"vLLM replica {self.url} is unreachable: {e}") from e
        self._check(resp, "list models")
        return resp.json().get("data", [])

    def models(self) -> list[str]:
        return [m["id"] for m in self._model_cards()]

    def loaded_adapters(self) -> list[str]:
        return [m["id"] for m in self._model_cards() if m.get("parent")]

    # -- adapters -----------------------------------------------------------------------------
    def load_adapter(self, lora_name: str, lora_path: str) -> None:
        body = {"lora_name": lora_name, "lora_path": lora_path}
        resp = self._post("/v1/load_lora_adapter", body, self.config.admin_timeout_s)
        if resp.status_code == 400 and "already been loaded" in _error_message(resp):
            return  # idempotent: promoting again after a partial failure
        if resp.status_code == 404:
            raise GenerationError(
                f"{self.url} has no /v1/load_lora_adapter: start vLLM with --enable-lora and "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
            )
        self._check(resp, f"load adapter {lora_name!r}")

    def unload_adapter(self, lora_name: str) -> None:
        resp = self._post("/v1/unload_lora_adapter", {"lora_name": lora_name}, self.config.admin_timeout_s)
        if resp.status_code == 404 or "cannot be found" in _error_message(resp):
            raise UnknownModel(f"adapter {lora_name!r} is not loaded on {self.url}")
        self._check(resp, f"unload adapter {lora_name!r}")

    # -- generation ---------------------------------------------------------------------------
    def generate_one(self, req: GenerationRequest) -> GenerationResult:
        req.validate(self.limits)
        path, body = _payload(req)
        resp = self._post(path, body)
        self._check(resp, "generate", req.model)
        data = resp.json()
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        if req.params.temperature == 0 and len(choices) == 1:
            choices = choices * req.params.n
        texts = [
            clip_output((c.get("message") or {}).get("content") or c.get("text") or "", self.limits)
            for c in choices
        ]
        usage = data.get("usage") or {}
        total = int(usage.get("completion_tokens") or 0) * (
            req.params.n if req.params.temperature == 0 else 1
        )
        counts = _split_tokens(total, len(choices))
        return GenerationResult(
            texts=texts,
            model=data.get("model", req.model),
            finish_reasons=[c.get("finish_reason") or "" for c in choices],
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=counts,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if len(requests) == 1:
            return [self.generate_one(requests[0])]
        if self.tokenizer_path:
            results: list[GenerationResult | None] = [None] * len(requests)
            for idx in _groups(requests):
                batch = self.generate_batch([requests[i] for i in idx])
                for i, res in zip(idx, batch, strict=True):
                    results[i] = res
            return [r for r in results if r is not None]
        with ThreadPoolExecutor(max_workers=min(len(requests), self.config.max_connections)) as pool:
            return list(pool.map(self.generate_one, requests))

    def _render(self, req: GenerationRequest) -> str:
        if req.messages is None:
            return req.prompt or ""
        if self._tok is None:
            with _TOKENIZER_LOCK:  # transformers' lazy imports are not safe to race from threads
                if self._tok is None:
                    from transformers.models.auto.tokenization_auto import AutoTokenizer

                    self._tok = AutoTokenizer.from_pretrained(self.tokenizer_path)
        return self._tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)

    def generate_batch(self, reqs: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Requests with the same model and parameters, as one ``/v1/completions`` call."""
        for req in reqs:
            req.validate(self.limits)
        first = reqs[0]
        _, body = _payload(GenerationRequest(model=first.model, prompt="", params=first.params))
        body.update(prompt=[self._render(r) for r in reqs], add_special_tokens=False, return_token_ids=True)
        resp = self._post("/v1/completions", body)
        self._check(resp, "generate", first.model)
        data = resp.json()
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        per = body["n"]
        if len(choices) != per * len(reqs):
            raise GenerationError(f"{self.url} answered {len(choices)} choices for {len(reqs)} prompts")
        copies = first.params.n if first.params.temperature == 0 else 1
        results = []
        for i, req in enumerate(reqs):
            mine = choices[i * per : (i + 1) * per] * copies
            results.append(
                GenerationResult(
                    texts=[clip_output(c.get("text") or "", self.limits) for c in mine],
                    model=data.get("model", req.model),
                    finish_reasons=[c.get("finish_reason") or "" for c in mine],
                    prompt_tokens=len(mine[0].get("prompt_token_ids") or []) if mine else 0,
                    completion_tokens=[len(c.get("token_ids") or []) for c in mine],
                )
            )
        return results

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text pieces of one sample (n is forced to 1), read from the server's SSE stream."""
        for _model, piece in self.stream_with_model(request):
            if piece:
                yield piece

    def stream_with_model(self, request: GenerationRequest) -> Iterator[tuple[str, str]]:
        """Every SSE chunk as (``model`` field, text piece); pieces may be empty (e.g. the role chunk)."""
        request.validate(self.limits)
        path, body = _payload(request, stream=True)
        body["n"] = 1
        produced = 0
        try:
            with self._http.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp, "stream", request.model)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise GenerationError(f"stream on {self.url}: {event['error']}")
                    for choice in event.get("choices", []):
                        piece = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                        piece = piece[: max(0, self.limits.max_output_chars - produced)]
                        produced += len(piece)
                        yield event.get("model", ""), piece
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise BackendUnavailable(f"vLLM replica {self.url} is unreachable: {e}") from e
        except (httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise BackendUnavailable(f"vLLM replica {self.url} dropped the stream: {e}") from e


def _groups(requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of requests grouped by (model, sampling parameters), in first-seen order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((r.model, repr(r.params)), []).append(i)
    return list(groups.values())


def _split_tokens(total: int, n: int) -> list[int]:
    """vLLM reports usage per request, not per choice: split it evenly (sums to the total)."""
    if n <= 0:
        return []
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


class VLLMGenerator:
    """``Generator`` over several replicas; requests fail over to the next replica when one is down."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        limits: Limits | None = None,
        config: ClientConfig | None = None,
        tokenizer: str | None = None,
    ) -> None:
        if not urls:
            raise BackendUnavailable("no vLLM replica URL is configured (VLLM_URLS)")
        self.limits = limits or Limits()
        self.config = config or ClientConfig()
        self._replicas = [
            VLLMReplica(u, limits=self.limits, config=self.config, tokenizer=tokenizer) for u in urls
        ]
        self._rr = itertools.count()
        self._lock = threading.Lock()

    @property
    def replicas(self) -> list[VLLMReplica]:
        return list(self._replicas)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._replicas]

    def close(self) -> None:
        for r in self._replicas:
            r.close()

    def _ordered(self) -> list[VLLMReplica]:
        with self._lock:
            start = next(self._rr) % len(self._replicas)
        return self._replicas[start:] + self._replicas[:start]

    def _with_failover(self, fn: Any) -> Any:
        errors = []
        for replica in self._ordered():
            try:
                return fn(replica)
            except BackendUnavailable as e:
                errors.append(str(e))
        raise BackendUnavailable("the generation service (vLLM) is unavailable: " + "; ".join(errors))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        for req in requests:
            req.validate(self.limits)
        if len(requests) <= 1:
            return [self._generate_one(req) for req in requests]
        if self._replicas[0].tokenizer_path:  # one batched call per (model, params) group
            groups = _groups(requests)
            results: list[GenerationResult | None] = [None] * len(requests)
            with ThreadPoolExecutor(max_workers=min(len(groups), self.config.max_connections)) as pool:
                batches = pool.map(
                    lambda idx: self._with_failover(lambda r: r.generate_batch([requests[i] for i in idx])),
                    groups,
                )
                for idx, batch in zip(groups, batches, strict=True):
                    for i, res in zip(idx, batch, strict=True):
                        results[i] = res
            return [r for r in results if r is not None]
        with ThreadPoolExecutor(max_workers=min(len(requests), self.config.max_connections)) as pool:
            return list(pool.map(self._generate_one, requests))

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        return self._with_failover(lambda replica: replica.generate_one(request))

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        # Fail over only before the first piece: a half-streamed answer is not restarted elsewhere.
        errors = []
        for replica in self._ordered():
            it = replica.stream(request)
            try:
                first = next(it)
            except StopIteration:
                return
            except BackendUnavailable as e:
                errors.append(str(e))
                continue
            yield first
            yield from it
            return
        raise BackendUnavailable("the generation service (vLLM) is unavailable: " + "; ".join(errors))

    def health(self) -> dict[str, Any]:
        reps = [r.health() for r in self._replicas]
        return {"ok": all(r["ok"] for r in reps), "backend": "vllm", "replicas": reps}


class RoutedVLLMGenerator:
    """``Generator`` that sends each request to the replicas that serve its model.

    ``route(model)`` names the replica URLs for a model (``None`` or empty: ``default_urls``); the
    app answers it from the version registry, which every process reads, so a blue/green switch to a
    new server reaches every process at once. ``serving()`` names the model new requests use: its
    replicas are ``replicas`` (where the registry loads adapters) and ``health()``'s subject. One
    ``VLLMGenerator`` (connection pool) is kept per set of URLs.
    """

    def __init__(
        self,
        default_urls: Sequence[str],
        *,
        route: Callable[[str], Sequence[str] | None],
        serving: Callable[[], str] | None = None,
        limits: Limits | None = None,
        config: ClientConfig | None = None,
        tokenizer: str | None = None,
    ) -> None:
        self.default_urls = tuple(default_urls)
        if not self.default_urls:
            raise BackendUnavailable("no vLLM replica URL is configured (VLLM_URLS)")
        self.limits = limits or Limits()
        self.config = config or ClientConfig()
        self.tokenizer = tokenizer
        self._route, self._serving = route, serving
        self._generators: dict[tuple[str, ...], VLLMGenerator] = {}
        self._lock = threading.Lock()

    def urls_for(self, model: str | None) -> tuple[str, ...]:
        return tuple((self._route(model) if model else None) or ()) or self.default_urls

    def generator_for(self, model: str | None = None) -> VLLMGenerator:
        urls = self.urls_for(model)
        with self._lock:
            gen = self._generators.get(urls)
            if gen is None:
                gen = VLLMGenerator(urls, limits=self.limits, config=self.config, tokenizer=self.tokenizer)
                self._generators[urls] = gen
            return gen

    def _current(self) -> VLLMGenerator:
        return self.generator_for(self._serving() if self._serving else None)

    @property
    def replicas(self) -> list[VLLMReplica]:
        return self._current().replicas

    @property
    def urls(self) -> list[str]:
        return self._current().urls

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(self.urls_for(r.model), []).append(i)
        if len(groups) <= 1:
            return self.generator_for(requests[0].model).generate(requests) if requests else []
        results: list[GenerationResult | None] = [None] * len(requests)
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            batches = pool.map(
                lambda idx: self.generator_for(requests[idx[0]].model).generate([requests[i] for i in idx]),
                groups.values(),
            )
            for idx, batch in zip(groups.values(), batches, strict=True):
                for i, res in zip(idx, batch, strict=True):
                    results[i] = res
        return [r for r in results if r is not None]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        return self.generator_for(request.model).stream(request)

    def health(self) -> dict[str, Any]:
        return self._current().health()

    def close(self) -> None:
        with self._lock:
            for gen in self._generators.values():
                gen.close()
            self._generators.clear()
