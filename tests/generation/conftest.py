"""Fixtures: a tiny random Llama (head_dim 64, chat template) and random LoRA adapters, built once."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest

import feedback_app.admin_versions  # noqa: F401  (registers the version admin and its URLs)
from trainer.generation.tiny import make_random_lora


@pytest.fixture(scope="session")
def adapters(tiny_model, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    return {f"v{i}": str(make_random_lora(tiny_model, root / f"v{i}", seed=i)) for i in range(1, 5)}


@pytest.fixture
def hf(tiny_model):
    from trainer.generation.hf_backend import HFGenerator

    return HFGenerator(tiny_model, base_name="base")


@pytest.fixture(autouse=True)
def _fresh_backend():
    """No generation backend leaks from one test to the next."""
    from feedback_app.services import generation

    generation.set_backend(None)
    yield
    generation.set_backend(None)


@pytest.fixture
def gen_settings(settings, tiny_model):
    settings.GENERATION = {
        "BACKEND": "hf",
        "MODEL_DIR": tiny_model,
        "BASE_MODEL_NAME": "base",
        "MAX_LORAS": 3,
        "HEALTH_CACHE_S": 0.001,
    }
    return settings.GENERATION


@pytest.fixture
def app_backend(gen_settings, hf):
    """The app's generation backend for this test: the in-process transformers model."""
    from feedback_app.services import generation

    generation.set_backend(hf)
    yield hf
    generation.set_backend(None)
