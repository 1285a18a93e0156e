"""Comparison items from chosen versions; behaviour when the backend is down; the admin pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from feedback_app import models
from feedback_app.services import generation, registry
from feedback_app.services.errors import InvalidInput
from tests.factories import PromptFactory
from trainer.generation.base import SamplingParams
from trainer.generation.vllm_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)  # promotion commits, then the alias moves


@pytest.fixture
def two_versions(app_backend, adapters, tiny_model):
    base = registry.register_version("base", base_model=tiny_model)
    registry._switch(base, user=None, reason="initial")
    v1 = registry.register_version("v1", adapter_path=adapters["v1"])
    v2 = registry.register_version("v2", adapter_path=adapters["v2"])
    registry.promote_version(v1)
    registry.promote_version(v2)
    return v1, v2


def test_current_versus_previous(project, two_versions):
    v1, v2 = two_versions
    prompts = [PromptFactory(project=project) for _ in range(3)]
    params = SamplingParams(temperature=0.0, max_tokens=8)
    items = generation.generate_comparison_items(project=project, prompts=prompts, params=params)
    assert len(items) == 3
    for item, prompt in zip(items, prompts, strict=True):
        assert item.prompt == prompt and item.status == "open"
        assert item.judgements_wanted == project.judgements_per_item
        responses = list(item.responses.order_by("itemresponse__position"))
        assert {r.model_version for r in responses} == {v1, v2}
        assert len({r.text for r in responses}) == 2  # greedy outputs differ between versions
        assert sorted(link.position for link in item.response_links.all()) == [0, 1]
        by_version = {r.model_version: r for r in responses}
        assert by_version[v2].generation_params["model"] == v2.lora_name
        assert by_version[v2].generation_params["temperature"] == 0.0
        assert by_version[v2].generation_params["backend"] == "hf"


def test_same_version_with_different_seeds(project, two_versions):
    _, v2 = two_versions
    prompt = PromptFactory(project=project)
    params = SamplingParams(temperature=1.0, max_tokens=10)
    (item,) = generation.generate_comparison_items(
        project=project, prompts=[prompt], versions=[v2, v2], params=params, seeds=[1, 2]
    )
    responses = list(item.responses.all())
    assert sorted(r.generation_params["seed"] for r in responses) == [1, 2]
    assert responses[0].text != responses[1].text


def test_n_per_version_and_limits(project, two_versions):
    _, v2 = two_versions
    prompt = PromptFactory(project=project)
    params = SamplingParams(temperature=1.0, max_tokens=6, seed=3)
    (item,) = generation.generate_comparison_items(
        project=project, prompts=[prompt], versions=[v2], n_per_version=3, params=params
    )
    assert item.responses.count() == 3
    with pytest.raises(InvalidInput, match=r"2\.\.9"):
        generation.generate_comparison_items(project=project, prompts=[prompt], versions=[v2], params=params)
    long = PromptFactory(project=project, messages=[{"role": "user", "content": "x" * 9000}])
    with pytest.raises(InvalidInput, match="prompt has"):
        generation.generate_comparison_items(
            project=project, prompts=[long], versions=[v2, v2], params=params
        )


def test_backend_down_stores_nothing_and_says_so(project, gen_settings, tiny_model, admin_client):
    gen_settings.update(BACKEND="vllm", VLLM_URLS=[f"http://127.0.0.1:{free_port()}"])
    generation.set_backend(None)
    base = registry.register_version("base", base_model=tiny_model)
    prompt = PromptFactory(project=project)
    with pytest.raises(generation.GenerationUnavailable, match="unavailable"):
        generation.generate_comparison_items(project=project, prompts=[prompt], versions=[base, base])
    assert models.Response.objects.count() == 0 and models.ComparisonItem.objects.count() == 0
    status = generation.backend_status(refresh=True)
    assert status["ok"] is False and "unavailable" in status["message"]
    page = admin_client.get(reverse("admin:feedback_app_modelversion_changelist"))
    assert page.status_code == 200
    assert b'id="generation-down"' in page.content


def test_admin_promote_and_rollback(admin_client, two_versions, adapters):
    v1, v2 = two_versions
    page = admin_client.get(reverse("admin:feedback_app_modelversion_changelist"))
    assert page.status_code == 200 and b"generation-down" not in page.content
    assert f"Roll back to {v1}".encode() in page.content
    v3 = registry.register_version("v3", adapter_path=adapters["v3"])
    url = reverse("admin:feedback_app_modelversion_promote", args=[v3.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url).status_code == 302
    assert registry.serving_version() == v3
    assert admin_client.post(reverse("admin:feedback_app_modelversion_rollback")).status_code == 302
    assert registry.serving_version() == v2
    change = admin_client.get(reverse("admin:feedback_app_modelversion_change", args=[v3.pk]))
    assert b"v2</a>" in change.content  # lineage v3 <- v2 <- ...


def test_chat_stream_keeps_the_version_it_started_on(two_versions, adapters, app_backend):
    _, v2 = two_versions
    model, pieces = generation.chat_stream(
        [{"role": "user", "content": "Hi"}], SamplingParams(temperature=0, max_tokens=8)
    )
    v3 = registry.register_version("v3", adapter_path=adapters["v3"])
    registry.promote_version(v3)
    assert model == v2.lora_name
    text = "".join(pieces)
    assert text and generation.chat_complete([{"role": "user", "content": "Hi"}])["model"] == v3.lora_name
