"""Version registry on the transformers backend: promote, rollback, all-or-none, --max-loras budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback_app.models import ModelVersion
from feedback_app.services import registry
from feedback_app.services.errors import Conflict, InvalidInput, NotFound
from trainer.generation.base import GenerationRequest, SamplingParams
from trainer.generation.vllm_backend import VLLMReplica
from trainer.generation.vllm_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)  # promotion commits, then the alias moves
HI = [{"role": "user", "content": "Which version are you?"}]
S = ModelVersion.Status


def greedy(backend, model: str) -> str:
    request = GenerationRequest(model=model, messages=HI, params=SamplingParams(temperature=0, max_tokens=10))
    return backend.generate([request])[0].texts[0]


@pytest.fixture
def versions(app_backend, adapters, tiny_model):
    base = registry.register_version("base", base_model=tiny_model)
    registry._switch(base, user=None, reason="initial")
    return {name: registry.register_version(name, adapter_path=path) for name, path in adapters.items()}


def test_register_version(versions, tiny_model, adapters):
    v1, v2 = versions["v1"], versions["v2"]
    assert v1.status == S.CANDIDATE and v1.parent.name == "base" and v1.base_model == tiny_model
    assert v1.lora_name.startswith("v1-") and v1.lora_name != v2.lora_name
    assert Path(v1.adapter_path).is_absolute()
    with pytest.raises(Conflict):
        registry.register_version("v1", adapter_path=adapters["v1"])


def test_register_refuses_bad_adapters(db, gen_settings, tmp_path, adapters):
    with pytest.raises(InvalidInput, match=r"adapter_config\.json"):
        registry.register_version("broken", adapter_path=str(tmp_path))
    gen_settings["MAX_LORA_RANK"] = 4
    with pytest.raises(InvalidInput, match="max-lora-rank"):
        registry.register_version("too-big", adapter_path=adapters["v1"])


def test_promote_then_rollback(versions, app_backend, staff):
    v1, v2 = versions["v1"], versions["v2"]
    assert registry.serving_alias() == "base"
    registry.promote_version(v1, user=staff)
    assert registry.serving_version() == v1 and registry.serving_alias() == v1.lora_name
    text_v1 = greedy(app_backend, v1.lora_name)

    in_flight = registry.serving_alias()  # a request that started before the next promotion
    registry.promote_version(v2, user=staff)
    v1.refresh_from_db()
    assert v1.status == S.RETIRED and registry.serving_version() == v2
    assert registry.serving_alias() == v2.lora_name
    assert greedy(app_backend, in_flight) == text_v1  # still loaded: the old request finishes on v1
    assert greedy(app_backend, v2.lora_name) != text_v1
    assert v2.promoted_by == staff and v2.served_since is not None

    back = registry.rollback(staff)
    assert back == v1 and registry.serving_alias() == v1.lora_name
    v2.refresh_from_db()
    assert v2.status == S.REJECTED and "rolled back" in v2.status_reason
    assert greedy(app_backend, registry.serving_alias()) == text_v1
    with pytest.raises(Conflict, match="rejected"):
        registry.promote_version(v2, user=staff)


def test_promote_twice_and_rollback_without_history(versions, staff):
    with pytest.raises(Conflict, match="no previous"):
        registry.rollback(staff)  # base serving, nothing before it
    registry.promote_version(versions["v1"], user=staff)
    with pytest.raises(Conflict, match="already serving"):
        registry.promote_version(versions["v1"], user=staff)


def test_rollback_with_nothing_serving(db, gen_settings):
    with pytest.raises(NotFound):
        registry.rollback(None)


def test_all_or_none_across_replicas(versions, app_backend, staff):
    """A replica that cannot be reached (a real client, nothing listening): nothing changes anywhere."""
    dead = VLLMReplica(f"http://127.0.0.1:{free_port()}")
    v1 = versions["v1"]
    with pytest.raises(registry.PromotionFailed, match="nothing changed"):
        registry.promote_version(v1, user=staff, replicas=[app_backend, dead])
    assert v1.lora_name not in app_backend.loaded_adapters()  # unloaded again from the good replica
    assert registry.serving_version().name == "base" and registry.serving_alias() == "base"
    v1.refresh_from_db()
    assert v1.status == S.CANDIDATE


def test_failed_load_leaves_serving_unchanged(versions, app_backend, staff):
    registry.promote_version(versions["v1"], user=staff)
    v2 = versions["v2"]
    v2.adapter_path = str(Path(v2.adapter_path).parent / "missing")
    v2.save()
    with pytest.raises(registry.PromotionFailed, match="v1 still serving"):
        registry.promote_version(v2, user=staff)
    assert registry.serving_version() == versions["v1"]


def test_older_adapters_are_unloaded_within_the_budget(versions, app_backend, gen_settings, staff):
    assert gen_settings["MAX_LORAS"] == 3
    for name in ("v1", "v2", "v3", "v4"):
        registry.promote_version(versions[name], user=staff)
        assert len(app_backend.loaded_adapters()) <= 3
    loaded = set(app_backend.loaded_adapters())
    assert {versions["v4"].lora_name, versions["v3"].lora_name} <= loaded  # serving + rollback target
    assert versions["v1"].lora_name not in loaded
    registry.rollback(staff)
    assert registry.serving_version() == versions["v3"]


def test_retired_version_can_be_promoted_again(versions, app_backend, staff):
    registry.promote_version(versions["v1"], user=staff)
    registry.promote_version(versions["v2"], user=staff)
    registry.promote_version(versions["v1"], user=staff)
    assert registry.serving_version() == versions["v1"]
    assert registry.previous_version(versions["v1"]) == versions["v2"]


def test_lineage(versions, staff):
    v1 = versions["v1"]
    child = registry.register_version("v1.1", adapter_path=v1.adapter_path, parent=v1)
    assert [v.name for v in registry.lineage(child)] == ["v1.1", "v1", "base"]


def test_rollback_to_the_base_weights(versions, app_backend, staff):
    registry.promote_version(versions["v1"], user=staff)
    assert registry.rollback(staff).name == "base"
    assert registry.serving_alias() == "base"
    assert greedy(app_backend, registry.serving_alias()) == greedy(app_backend, "base")


def test_routes_follow_the_recorded_servers(versions, app_backend, staff):
    """Blue/green records servers on a version; its adapters go there too; every process reads the table."""
    from django.core.cache import cache

    base = ModelVersion.objects.get(name="base")
    green = [{"url": "http://127.0.0.1:9", "pid": None}]
    ModelVersion.objects.filter(pk=base.pk).update(servers=green)
    registry.publish_routing()
    assert registry.route("base") == ["http://127.0.0.1:9"] and registry.route("other") is None
    registry.promote_version(versions["v1"], user=staff)
    versions["v1"].refresh_from_db()
    assert versions["v1"].servers == green
    table = cache.get(registry.ROUTING_KEY)  # what other processes read
    assert table["alias"] == versions["v1"].lora_name
    assert table["routes"] == {
        "base": ["http://127.0.0.1:9"],
        versions["v1"].lora_name: ["http://127.0.0.1:9"],
    }
