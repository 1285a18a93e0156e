"""Simulated labelers with a hidden preference rule, driving the real loop end to end.

Each round: the serving version answers prompts twice (two seeds) → comparison
items; simulated labelers fetch and judge them through the HTTP API, preferring
the answer that satisfies the rule (with some noise); a training run goes
through the Celery pipeline; then we sample the serving version again and
measure the share of answers that satisfy the rule. That share rising over
rounds is the proof that the loop aligns the model.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from feedback_app.models import ModelVersion, Project, Prompt, TrainingRun
from feedback_app.services import generation, pipeline, registry
from trainer.generation.base import GenerationRequest, SamplingParams

SIMULATION_PROJECT = "Simulation: hidden rule"


@dataclass
class Rule:
    """A hidden preference the simulated labelers follow."""

    name: str
    check: Callable[[str], bool]
    description: str


def word_count(text: str) -> int:
    return len(re.findall(r"\w+", text))


def make_rule(spec: str, *, calibration: list[str] | None = None) -> Rule:
    """A rule: ``short`` (median word count of ``calibration``), ``short:N``, ``keyword:W``, ``exclaim``."""
    kind, _, arg = spec.partition(":")
    if kind == "short":
        if arg:
            limit = int(arg)
        elif calibration:
            limit = int(statistics.median(word_count(text) for text in calibration))
        else:
            limit = 12
        return Rule(f"short:{limit}", lambda text: word_count(text) <= limit, f"at most {limit} words")
    if kind == "keyword" and arg:
        word = arg.lower()
        return Rule(spec, lambda text: word in text.lower(), f"mentions {word!r}")
    if kind == "exclaim":
        return Rule(spec, lambda text: text.rstrip().endswith("!"), "ends with an exclamation mark")
    raise ValueError(f"unknown rule {spec!r}: use short, short:N, keyword:WORD or exclaim")


@dataclass
class SimulationConfig:
    rounds: int = 3
    labelers: int = 3
    items_per_round: int = 96
    judgements_per_item: int = 1
    noise: float = 0.1
    rule: str = "short"
    eval_prompts: int = 48
    eval_samples: int = 4  # samples per eval prompt: 192 answers measure the rule share to about ±3.5 %
    max_tokens: int = 48
    temperature: float = 1.0
    seed: int = 0
    training_options: dict[str, Any] | None = None
    run_timeout_s: float = 600.0


def ensure_project(config: SimulationConfig) -> Project:
    project, _ = Project.objects.get_or_create(
        name=SIMULATION_PROJECT,
        defaults={
            "guidelines": "Simulated labelers follow a hidden rule.",
            "judgements_per_item": config.judgements_per_item,
            "gold_rate": 0.0,
        },
    )
    from feedback_app.services.demo import load_corpus

    if not project.prompts.exists():
        Prompt.objects.bulk_create(
            Prompt(
                project=project, messages=[{"role": "user", "content": row["prompt"]}], content_hash=str(n)
            )
            for n, row in enumerate(load_corpus())
        )
        for prompt in project.prompts.all():
            prompt.save()  # computes the real content hash
    return project


def ensure_serving_base() -> ModelVersion:
    from feedback_app.services.demo import ensure_serving_base as adopt_base

    version = adopt_base()
    if version is None:
        raise RuntimeError("no model version is serving and no base model (VLLM_MODEL_DIR) is configured")
    return version


def reset() -> None:
    """Start over: archive the simulation project (judgements are never deleted) and serve the base again."""
    from django.db import transaction

    with transaction.atomic():
        stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
        Project.objects.filter(name=SIMULATION_PROJECT).update(
            name=f"{SIMULATION_PROJECT} (archived {stamp})", is_active=False
        )
        base = ModelVersion.objects.filter(name="base").first()
        if base is not None:
            ModelVersion.objects.filter(status=ModelVersion.Status.SERVING).exclude(pk=base.pk).update(
                status=ModelVersion.Status.RETIRED
            )
            ModelVersion.objects.filter(pk=base.pk).update(status=ModelVersion.Status.SERVING)
    from django.core.cache import cache

    cache.clear()  # the serving alias is cached


def ensure_labelers(n: int) -> list[str]:
    users = get_user_model()
    tokens = []
    for index in range(n):
        user, _ = users.objects.get_or_create(username=f"sim-labeler-{index}")
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return tokens


def ensure_loaded(version: ModelVersion) -> None:
    """An in-process (hf) backend holds its own adapters: load the version's here if needed.

    vLLM replicas are shared by every process, and promotion already loaded it there.
    """
    backend = generation.get_backend()
    if generation.generation_config()["BACKEND"] != "hf" or not version.lora_name:
        return
    if version.lora_name not in backend.loaded_adapters():
        backend.load_adapter(version.lora_name, version.adapter_path)


def sample(version: ModelVersion, prompts: list[str], config: SimulationConfig, seed: int) -> list[str]:
    """``config.eval_samples`` answers per prompt, each its own request with its own seed.

    (One request with ``n`` > 1 and a seed can return the same text n times.)
    """
    ensure_loaded(version)
    backend = generation.get_backend()
    model = registry.model_name(version)
    requests_ = [
        GenerationRequest(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            params=SamplingParams(
                n=1, temperature=config.temperature, max_tokens=config.max_tokens, seed=seed * 1000 + index
            ),
        )
        for prompt in prompts
        for index in range(config.eval_samples)
    ]
    return [result.texts[0] for result in backend.generate(requests_)]


def label_over_http(
    base_url: str, project: Project, tokens: list[str], rule: Rule, config: SimulationConfig
) -> dict[str, int]:
    """Each simulated labeler judges until its queue is empty. Returns counts."""
    counts = {"judgements": 0, "errors": 0}
    lock = threading.Lock()

    def labeler(index: int, token: str) -> None:
        rng = random.Random(config.seed * 1000 + index)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        response = session.post(f"{base_url}/api/v1/projects/{project.pk}/next/", timeout=30)
        item = response.json().get("item")
        while item is not None:
            responses = item["responses"]
            good = [r["id"] for r in responses if rule.check(r["text"])]
            bad = [r["id"] for r in responses if not rule.check(r["text"])]
            if good and bad:
                ranking = [good, bad] if rng.random() >= config.noise else [bad, good]
            else:
                ranking = [[r["id"] for r in responses]]  # both or neither follow the rule: a tie
            body = {
                "item": item["item_id"],
                "ranking": ranking,
                "client_key": uuid.uuid4().hex,
                "time_spent_ms": rng.randint(800, 5000),
                "next": True,
            }
            result = session.post(
                f"{base_url}/api/v1/projects/{project.pk}/judgements/", json=body, timeout=30
            )
            with lock:
                if result.status_code in (200, 201):
                    counts["judgements"] += result.status_code == 201
                else:
                    counts["errors"] += 1
            if result.status_code == 429:
                time.sleep(float(result.headers.get("Retry-After", "1")))
                continue
            item = result.json().get("next", {}).get("item") if result.ok else None

    threads = [threading.Thread(target=labeler, args=(i, token)) for i, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def wait_for_run(run_id: int, timeout_s: float) -> TrainingRun:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = TrainingRun.objects.get(pk=run_id)
        if run.is_finished:
            return run
        time.sleep(1.0)
    pipeline.fail(run_id, f"the simulation gave up waiting after {timeout_s:.0f} s")
    return TrainingRun.objects.get(pk=run_id)


def rule_share(texts: list[str], rule: Rule) -> float:
    return sum(rule.check(text) for text in texts) / len(texts) if texts else 0.0


def simulate(
    config: SimulationConfig,
    *,
    base_url: str,
    start_pipeline: Callable[[int], Any],
    emit: Callable[[dict], None],
) -> list[dict[str, Any]]:
    """Run ``config.rounds`` rounds of the loop and ``emit`` one summary dict per round (round 0 = before)."""
    rng = random.Random(config.seed)
    project = ensure_project(config)
    serving = ensure_serving_base()
    tokens = ensure_labelers(config.labelers)
    prompts = list(project.prompts.order_by("pk"))
    rng.shuffle(prompts)
    eval_prompts = [p.last_user_message for p in prompts[: config.eval_prompts]]
    train_pool = prompts[config.eval_prompts :]
    before = sample(serving, eval_prompts, config, seed=10_000)
    rule = make_rule(config.rule, calibration=before)
    summaries = [
        {
            "round": 0,
            "judgements": 0,
            "rm_accuracy": None,
            "gate": None,
            "serving_version": serving.name,
            "rule_share": round(rule_share(before, rule), 4),
            "rule": rule.name,
            "round_s": 0.0,
        }
    ]
    emit(summaries[0])
    for round_no in range(1, config.rounds + 1):
        started = time.monotonic()
        serving = registry.serving_version()
        ensure_loaded(serving)
        batch = rng.sample(train_pool, min(config.items_per_round, len(train_pool)))
        params = SamplingParams(n=1, temperature=config.temperature, max_tokens=config.max_tokens)
        generation.generate_comparison_items(
            project=project,
            prompts=batch,
            versions=[serving, serving],
            params=params,
            seeds=[round_no * 2, round_no * 2 + 1],
        )
        counts = label_over_http(base_url, project, tokens, rule, config)
        connection.close()  # threads are done; start clean for the pipeline
        run = pipeline.launch_run(
            project=project, options=config.training_options or {}, trigger=TrainingRun.Trigger.SIMULATION
        )
        start_pipeline(run.pk)
        run = wait_for_run(run.pk, config.run_timeout_s)
        serving = registry.serving_version()
        after = sample(serving, eval_prompts, config, seed=10_000 + round_no)
        summary = {
            "round": round_no,
            "judgements": counts["judgements"],
            "rm_accuracy": (run.metrics.get("reward") or {}).get("eval", {}).get("accuracy"),
            "gate": (run.gate_report or {}).get("decision") or run.status,
            "serving_version": serving.name,
            "rule_share": round(rule_share(after, rule), 4),
            "run_status": run.status,
            "round_s": round(time.monotonic() - started, 1),
        }
        if run.error:
            summary["error"] = run.error
        summaries.append(summary)
        emit(summary)
    return summaries


def as_json_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=False)
