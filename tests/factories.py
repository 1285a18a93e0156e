"""factory_boy factories for the annotation models."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from feedback_app import models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"labeler{n}")
    password = factory.django.Password("pw-for-tests")


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    is_superuser = True


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Project

    name = factory.Sequence(lambda n: f"Project {n}")
    guidelines = "Prefer the **helpful** and honest answer."
    gold_rate = 0.0


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Prompt

    project = factory.SubFactory(ProjectFactory)
    messages = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ModelVersion
        django_get_or_create = ("name",)

    name = "v0"
    origin = "tests"


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Response

    prompt = factory.SubFactory(PromptFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    text = factory.Sequence(lambda n: f"Answer {n}.")


def make_item(
    project: models.Project | None = None,
    *,
    n_responses: int = 2,
    texts: list[str] | None = None,
    is_gold: bool = False,
    gold_ranking: list[list[int]] | None = None,
    k: int | None = None,
) -> models.ComparisonItem:
    """A comparison item with ``n_responses`` fresh responses to a fresh prompt."""
    project = project or ProjectFactory()
    prompt = PromptFactory(project=project)
    texts = texts or [f"Response {i} to {prompt.pk}." for i in range(n_responses)]
    responses = [ResponseFactory(prompt=prompt, text=text) for text in texts]
    item = models.ComparisonItem.objects.create(
        project=project,
        prompt=prompt,
        is_gold=is_gold,
        judgements_wanted=k if k is not None else project.judgements_per_item,
    )
    for position, response in enumerate(responses):
        models.ItemResponse.objects.create(item=item, response=response, position=position)
    if is_gold:
        ids = [r.pk for r in responses]
        item.gold_ranking = gold_ranking or [[rid] for rid in ids]
        item.save(update_fields=["gold_ranking"])
    return item
