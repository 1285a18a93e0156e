"""Fixtures for the chat: the project's tiny random Llama served in-process by transformers."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest

from trainer.generation.tiny import make_random_lora


@pytest.fixture(scope="session")
def adapter(tiny_model, tmp_path_factory) -> str:
    return str(make_random_lora(tiny_model, tmp_path_factory.mktemp("chat-adapter") / "v1", seed=1))


@pytest.fixture(scope="session")
def hf_generator(tiny_model):
    from trainer.generation.hf_backend import HFGenerator

    return HFGenerator(tiny_model, base_name="base")


@pytest.fixture
def chat_settings(settings, tiny_model):
    """Generation on the in-process transformers backend; short answers; no comparisons by default."""
    settings.GENERATION = {
        "BACKEND": "hf",
        "MODEL_DIR": tiny_model,
        "BASE_MODEL_NAME": "base",
        "MAX_LORAS": 3,
        "HEALTH_CACHE_S": 0.001,
    }
    settings.CHAT = {"COMPARE_RATE": 0.0, "MAX_TOKENS": 12, "TEMPERATURE": 0.8}
    return settings


@pytest.fixture
def backend(chat_settings, hf_generator):
    """The app's generation backend for this test (adapters loaded by a test are unloaded after it)."""
    from feedback_app.services import generation

    generation.set_backend(hf_generator)
    yield hf_generator
    for name in hf_generator.loaded_adapters():
        hf_generator.unload_adapter(name)
    generation.set_backend(None)


@pytest.fixture
def serving_base(backend, tiny_model):
    """The base weights registered and serving (no previous version)."""
    from feedback_app.services import registry

    base = registry.register_version("base", base_model=tiny_model)
    registry._switch(base, user=None, reason="initial")
    return base


@pytest.fixture
def two_versions(serving_base, adapter):
    """A LoRA version v1 serving, the base weights its previous version (rollback target)."""
    from feedback_app.services import registry

    v1 = registry.register_version("v1", adapter_path=adapter)
    registry.promote_version(v1)
    return serving_base, registry.serving_version()
