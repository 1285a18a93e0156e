"""Demo data: accounts, and a project seeded from the demo corpus the trainer ships."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from feedback_app.models import ComparisonItem, ItemResponse, ModelVersion, Project, Prompt, Response

DEMO_CORPUS = settings.BASE_DIR / "trainer" / "data" / "demo_corpus.jsonl"
DEMO_PROJECT = "Demo: helpful answers"
DEMO_GUIDELINES = """\
**Pick the answer a careful expert would give.**

1. Correct and on topic beats fluent but wrong.
2. Shorter is better when it says the same thing.
3. Press `=` when both are equally good, `0` when both are bad.

Write a better answer when you know one: it becomes training data.
"""


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    is_staff: bool


def demo_accounts() -> list[DemoAccount]:
    from feedback_app.env import env_str

    return [
        DemoAccount("admin", env_str("DEMO_ADMIN_PASSWORD", "admin-demo"), True),
        DemoAccount("labeler", env_str("DEMO_LABELER_PASSWORD", "labeler-demo"), False),
        DemoAccount("labeler2", env_str("DEMO_LABELER_PASSWORD", "labeler-demo"), False),
    ]


def ensure_accounts() -> list[DemoAccount]:
    users = get_user_model()
    accounts = demo_accounts()
    for account in accounts:
        user, _ = users.objects.get_or_create(username=account.username)
        user.is_staff = user.is_superuser = account.is_staff
        user.set_password(account.password)
        user.save()
        Token.objects.get_or_create(user=user)
    return accounts


def load_corpus(path: Path = DEMO_CORPUS) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@transaction.atomic
def seed_demo_project(*, items: int = 120, gold: int = 6, seed: int = 0) -> Project:
    """A project whose items compare each corpus answer with an answer to another prompt on the same topic.

    Idempotent: an existing demo project is returned unchanged.
    """
    existing = Project.objects.filter(name=DEMO_PROJECT).first()
    if existing is not None:
        return existing
    rng = random.Random(seed)
    corpus = load_corpus()
    by_topic: dict[str, list[dict[str, str]]] = {}
    for row in corpus:
        by_topic.setdefault(row["topic"], []).append(row)
    project = Project.objects.create(
        name=DEMO_PROJECT,
        guidelines=DEMO_GUIDELINES,
        gold_rate=0.05,
        auto_retrain=True,
        retrain_min_new_judgements=30,
    )
    reference, _ = ModelVersion.objects.get_or_create(
        name="demo-reference", defaults={"origin": "demo corpus"}
    )
    distractor, _ = ModelVersion.objects.get_or_create(
        name="demo-distractor", defaults={"origin": "demo corpus, answer to another prompt"}
    )
    chosen = rng.sample(corpus, min(items + gold, len(corpus)))
    for index, row in enumerate(chosen):
        pool = [other for other in by_topic[row["topic"]] if other["prompt"] != row["prompt"]] or corpus
        other = rng.choice(pool)
        prompt = Prompt.objects.create(project=project, messages=[{"role": "user", "content": row["prompt"]}])
        good = Response.objects.create(prompt=prompt, model_version=reference, text=row["response"])
        off = Response.objects.create(prompt=prompt, model_version=distractor, text=other["response"])
        is_gold = index < gold
        item = ComparisonItem.objects.create(
            project=project,
            prompt=prompt,
            is_gold=is_gold,
            gold_ranking=[[good.pk], [off.pk]] if is_gold else None,
            judgements_wanted=project.judgements_per_item,
        )
        pair = [good, off]
        rng.shuffle(pair)
        ItemResponse.objects.bulk_create(
            ItemResponse(item=item, response=response, position=position)
            for position, response in enumerate(pair)
        )
    return project


def ensure_serving_base() -> ModelVersion | None:
    """Register the base model the generation servers run as the serving version, once."""
    from feedback_app.services.generation import generation_config
    from feedback_app.services.registry import serving_version

    current = serving_version()
    model_dir = generation_config()["MODEL_DIR"]
    if current is not None or not model_dir:
        return current
    version, _ = ModelVersion.objects.get_or_create(
        name="base", defaults={"base_model": model_dir, "origin": "bootstrap (tiny local policy)"}
    )
    ModelVersion.objects.filter(pk=version.pk).update(
        status=ModelVersion.Status.SERVING, served_since=timezone.now()
    )
    version.refresh_from_db()
    return version
