"""Shared fixtures. Tests run against the real PostgreSQL and Redis."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path, monkeypatch):
    """Each test gets its own export folder, its own Redis key prefix and no vote-rate limit."""
    from feedback_app.services import assignment

    # Lazy lease reclaiming is throttled per process; each test starts unthrottled.
    monkeypatch.setattr(assignment, "_last_reclaim_check", 0.0)
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "KEY_PREFIX": f"test-{os.getpid()}-{tmp_path.name}",
        }
    }
    settings.FEEDBACK = {**settings.FEEDBACK, "VOTE_RATE": 0}


@pytest.fixture
def labeler(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_labeler(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def staff(db):
    from tests.factories import StaffFactory

    return StaffFactory()


@pytest.fixture
def project(db):
    from tests.factories import ProjectFactory

    return ProjectFactory()


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()
